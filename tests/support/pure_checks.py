# Checks of the OCPP firmware's pure logic, written once and run under both interpreters:
# pytest imports this file under CPython (one test per check), and runs it as a script under
# the unix-port micropython, where it prints "ok <name>" per check. MicroPython-compatible
# code only (no pytest here). Each check runs in a scratch current directory (flash files).
try:
    from support import checkrun   # CPython: tests/ is on sys.path
except ImportError:
    import checkrun                # micropython runs this file from tests/support

import os

try:
    import ujson as json
except ImportError:
    import json

import connector
import fields
import journal
import ocpp_calls
import ocpp_keys
import ocppj
import state
import ws
import ws_open


def payload_check(action, payload, mid):
    """ocpp_calls.check_payload against the constraints of `action` in the station's table."""
    ocpp_calls.check_payload(action, ocpp_calls.row(action)[1], payload, mid)


def encode_frame(opcode, data, mask, fin=True):
    """A client frame (always masked) of data, as the firmware sends one: ws.with_room, then
    ws.prepare in place."""
    buf = ws.with_room(data)
    return memoryview(buf)[ws.prepare(buf, opcode, mask, fin):]


def call_raw(mid, action, body, tx_id=None, room=0):
    """The CALL frame ocppj.call_frame makes around a journalled payload (bytes), filled."""
    buf, at, skip = ocppj.call_frame(mid, action, len(body), tx_id, room)
    buf[at:-1] = memoryview(body)[skip:]
    return buf


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%r did not raise %r" % (args, exc))


# --- ocppj: framing ------------------------------------------------------------------------

def check_parse__valid_frames():
    got = ocppj.parse('[2, "19223201", "BootNotification", {"a": 1}]')
    assert got == (2, "19223201", "BootNotification", {"a": 1}), got
    got = ocppj.parse('[3,"x-1",{"status":"Accepted"}]')
    assert got == (3, "x-1", None, {"status": "Accepted"}), got
    got = ocppj.parse('[4,"x-2","NotImplemented","no",{}]')
    assert got == (4, "x-2", None, ("NotImplemented", "no", {})), got


def check_parse__invalid_frames_give_the_right_error_and_id():
    cases = [
        ("not json", "FormationViolation", "-1"),
        ("", "FormationViolation", "-1"),
        ('{"a": 1}', "FormationViolation", "-1"),
        ("[2]", "FormationViolation", "-1"),
        ('[2, 7, "Reset", {}]', "FormationViolation", "-1"),
        ('[2, "' + "x" * 37 + '", "Reset", {}]', "FormationViolation", "-1"),
        ('[2, "a1", "Reset"]', "FormationViolation", "a1"),
        ('[2, "a2", "", {}]', "FormationViolation", "a2"),
        ('[2, "a3", "Reset", []]', "FormationViolation", "a3"),
        ('[3, "a4", "x"]', "FormationViolation", "a4"),
        ('[4, "a5", "X", 1, {}]', "FormationViolation", "a5"),
        ('["2", "a6", "Reset", {}]', "FormationViolation", "a6"),
        ('[7, "a7", "Reset", {}]', "ProtocolError", "a7"),
    ]
    for text, code, mid in cases:
        e = raises(ocppj.FrameError, ocppj.parse, text)
        assert (e.code, e.msg_id) == (code, mid), (text, e.code, e.msg_id)


def check_build__exact_frames():
    assert ocppj.call("1", "Heartbeat", {}) == '[2, "1", "Heartbeat", {}]'
    assert "".join(ocppj.result_pieces("1", {"status": "Accepted"})()) == '[3, "1", {"status":"Accepted"}]'
    assert ocppj.error("1", "NotImplemented", "x") == '[4, "1", "NotImplemented", "x", {}]'
    # journalled payloads go out as written, the transaction id put in front when known
    body = b'{"connectorId": 1, "meterValue": []}'
    assert bytes(call_raw("m-7", "MeterValues", body)) == b'[2, "m-7", "MeterValues", ' + body + b']'
    got = call_raw("m-7", "MeterValues", memoryview(b"|" + body + b"\n")[1:-1], 9)
    assert bytes(got) == b'[2, "m-7", "MeterValues", {"transactionId": 9, "connectorId": 1, "meterValue": []}]', got
    got = call_raw("m-7", "MeterValues", body, 1001)
    assert bytes(got) == b'[2, "m-7", "MeterValues", {"transactionId": 1001, "connectorId": 1, "meterValue": []}]', got
    assert json.loads(bytes(got).decode())[3] == {"transactionId": 1001, "connectorId": 1, "meterValue": []}
    assert call_raw("m-8", "StopTransaction", b"{}", 5) == b'[2, "m-8", "StopTransaction", {"transactionId": 5}]'
    # with room in front for the WebSocket header: the same frame after it
    got = call_raw("m-7", "MeterValues", body, 1001, ws.HEADROOM)
    assert len(got) == ws.HEADROOM + 86 and bytes(got[ws.HEADROOM:]) == bytes(call_raw(
        "m-7", "MeterValues", body, 1001)), got
    ids = ocppj.Ids("ab12", 5)
    assert (ids.next(), ids.next()) == ("ab12-5", "ab12-6")


def check_payload__valid_and_invalid_pairs():
    ok = [("RemoteStartTransaction", {"idTag": "T1"}),
          ("RemoteStartTransaction", {"idTag": "T1", "connectorId": 1, "chargingProfile": {}}),
          ("Reset", {"type": "Soft"}), ("ClearCache", {}),
          ("GetConfiguration", {}), ("GetConfiguration", {"key": ["A", "B"]}),
          ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}),
          ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}),
          ("DataTransfer", {"vendorId": "acme", "data": "x"})]
    for action, p in ok:
        payload_check(action, p, "m")
    bad = [("RemoteStartTransaction", {}, "ProtocolError"),
           ("RemoteStartTransaction", {"idTag": 5}, "TypeConstraintViolation"),
           ("RemoteStartTransaction", {"idTag": "x" * 21}, "PropertyConstraintViolation"),
           ("RemoteStartTransaction", {"idTag": "T", "connectorId": "1"}, "TypeConstraintViolation"),
           ("RemoteStartTransaction", {"idTag": "T", "extra": 1}, "FormationViolation"),
           ("RemoteStopTransaction", {"transactionId": 1.5}, "TypeConstraintViolation"),
           ("RemoteStopTransaction", {"transactionId": True}, "TypeConstraintViolation"),
           ("Reset", {"type": "Warm"}, "PropertyConstraintViolation"),
           ("GetConfiguration", {"key": "HeartbeatInterval"}, "TypeConstraintViolation"),
           ("GetConfiguration", {"key": [1]}, "TypeConstraintViolation"),
           ("ChangeConfiguration", {"key": "K"}, "ProtocolError"),
           ("ChangeConfiguration", {"key": "K", "value": 60}, "TypeConstraintViolation"),
           ("TriggerMessage", {"requestedMessage": "Coffee"}, "PropertyConstraintViolation"),
           ("ChangeAvailability", {"connectorId": 1, "type": "Off"}, "PropertyConstraintViolation")]
    for action, p, code in bad:
        e = raises(ocppj.FrameError, payload_check, action, p, "m")
        assert (e.code, e.msg_id) == (code, "m"), (action, p, e.code)


class _Lcg:
    """A tiny seeded PRNG giving the same sequence under CPython and MicroPython."""

    def __init__(self, seed):
        self.x = seed

    def next(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n


_ATOMS = ['2', '3', '4', '"a1"', '"Reset"', '"RemoteStartTransaction"', '"ChangeConfiguration"',
          '{}', '[]', 'null', 'true', '1.5', '-7', '"x"', '{"type": "Soft"}', '{"idTag": 5}',
          '{"key": "HeartbeatInterval", "value": "9"}', '{"connectorId": "1"}', '"\\u00e9"',
          '{"transactionId": 3}', '{"key": ["A", 1]}']


_IDS = ['"a1"', '"' + "i" * 36 + '"', '"' + "i" * 37 + '"', '""', '7', 'null']
_ACTIONS = ['"Reset"', '"RemoteStartTransaction"', '"ChangeConfiguration"', '"ClearCache"',
            '"GetConfiguration"', '"RemoteStopTransaction"', '"Coffee"', '3', '""']
_CHARS = "[]{}\\\",:0123 abtrue"


def check_fuzz__parser_and_payload_checks_only_raise_frame_error():
    rng = _Lcg(20261125)
    n_calls = n_errors = 0
    for _ in range(3000):
        k = rng.next(4)
        if k == 0:  # random characters from the JSON alphabet
            text = "".join(_CHARS[rng.next(len(_CHARS))] for _ in range(rng.next(30)))
        elif k == 1:  # CALL-shaped: [2, id, action, payload] from plausible parts
            text = "[2, %s, %s, %s]" % (_IDS[rng.next(len(_IDS))], _ACTIONS[rng.next(len(_ACTIONS))],
                                        _ATOMS[rng.next(len(_ATOMS))])
        else:       # arrays of plausible atoms, sometimes cut short
            text = "[" + ", ".join(_ATOMS[rng.next(len(_ATOMS))] for _ in range(rng.next(6))) + "]"
            if k == 3:
                text = text[:rng.next(len(text) + 1)]
        try:
            t, mid, action, payload = ocppj.parse(text)
            if t == ocppj.CALL and action in ocpp_calls.WHERE:
                payload_check(action, payload, mid)
                n_calls += 1
        except ocppj.FrameError as e:
            assert e.code in ("FormationViolation", "ProtocolError", "TypeConstraintViolation",
                              "PropertyConstraintViolation"), (text, e.code)
            assert isinstance(e.msg_id, str) and 0 < len(e.msg_id) <= 36, (text, e.msg_id)
            n_errors += 1
    assert n_calls >= 5 and n_errors > 1000, (n_calls, n_errors)


# --- ocppj: time and payloads ---------------------------------------------------------------

def check_time__iso_known_values_and_round_trip():
    assert ocppj.iso(0) == "1970-01-01T00:00:00.000Z"
    assert ocppj.iso(951782400) == "2000-02-29T00:00:00.000Z"
    assert ocppj.iso(1795600000.25) == "2026-11-25T09:46:40.250Z", ocppj.iso(1795600000.25)
    assert ocppj.iso("2026-11-25T09:46:40.250Z") == "2026-11-25T09:46:40.250Z"  # text as it is
    # the station's clock: integer epoch milliseconds, exact without any float (a Pico W's
    # float32 holds an epoch only to ~2 minutes)
    assert ocppj.parse_iso_ms("2026-11-25T09:46:40.250Z") == 1795600000250
    assert ocppj.parse_iso_ms("2026-11-25T09:46:40.25Z") == 1795600000250
    assert ocppj.parse_iso_ms("2026-11-25T09:46:40.123456+00:00") == 1795600000123
    assert ocppj.parse_iso_ms("2026-11-25T10:46:40+01:00") == 1795600000000
    assert ocppj.parse_iso_ms("2026-11-25T09:46:40Z") == 1795600000000
    assert ocppj.iso_ms(1795600000007) == "2026-11-25T09:46:40.007Z"
    for t in (0, 86399999, 951868799000, 4102444800500, 1795600000001):
        assert type(ocppj.parse_iso_ms(ocppj.iso_ms(t))) is int
        assert ocppj.parse_iso_ms(ocppj.iso_ms(t)) == t, t
    for bad in ("", "yesterday", "2026-11-25", "2026/11/25T09:46:40Z", "2026-11-25T09:46:40+0100"):
        raises(ValueError, ocppj.parse_iso_ms, bad)


def check_payloads__meter_value_and_transactions_exact():
    reading = {"energy_wh": 1234.5678, "current_a": 16.0, "voltage_v": 229.9, "power_w": 3678.4,
               "temp_c": 24.0, "humidity": 40.0}
    mv = ocppj.meter_value(1795600000, reading, ["Energy.Active.Import.Register", "Temperature"],
                           "Sample.Periodic")
    assert mv == {"timestamp": "2026-11-25T09:46:40.000Z", "sampledValue": [
        {"value": "1234.568", "context": "Sample.Periodic", "format": "Raw",
         "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
        {"value": "24", "context": "Sample.Periodic", "format": "Raw", "measurand": "Temperature",
         "location": "Body", "unit": "Celsius"}]}, mv
    # a reading not taken yet (None) is left out rather than sent as "None"
    mv = ocppj.meter_value(0, {"energy_wh": 0.0, "current_a": None}, ["Current.Import",
                                                                       "Energy.Active.Import.Register"], "Trigger")
    assert [s["value"] for s in mv["sampledValue"]] == ["0"], mv
    assert ocppj.start_transaction(1, "T", 12.9, 0) == {
        "connectorId": 1, "idTag": "T", "meterStart": 12, "timestamp": "1970-01-01T00:00:00.000Z"}
    assert ocppj.stop_transaction(7, "T", 20.2, 0, "Local") == {
        "transactionId": 7, "meterStop": 20, "timestamp": "1970-01-01T00:00:00.000Z",
        "reason": "Local", "idTag": "T"}
    assert ocppj.status_notification(1, "Faulted", 0, "HighTemperature") == {
        "connectorId": 1, "errorCode": "HighTemperature", "status": "Faulted",
        "timestamp": "1970-01-01T00:00:00.000Z"}
    # DataTransfer Climate: a JSON object in a string, a sensor without a reading left out
    assert ocppj.climate(45, 31.25) == '{"humidity":45,"board_temp_c":31.25}'
    assert ocppj.climate(None, 30.0) == '{"board_temp_c":30}'
    assert ocppj.climate(44.5, None) == '{"humidity":44.5}'
    assert ocppj.climate(None, None) is None
    assert json.loads(ocppj.climate(-0.0004, -5.5)) == {"humidity": 0, "board_temp_c": -5.5}
    assert ocppj.check_measurands(" Voltage, Temperature ,") == ["Voltage", "Temperature"]
    raises(ValueError, ocppj.check_measurands, "Voltage,SoC")


def check_time__next_aligned_counts_from_midnight_utc():
    day = 1795564800  # 2026-11-25T00:00:00Z, in s; times in ms
    cases = [(day, 900, day + 900), (day + 899.9, 900, day + 900), (day + 900, 900, day + 1800),
             (day + 86399.5, 900, day + 86400), (day + 3.2, 2, day + 4), (day + 4, 2, day + 6),
             # 7 s does not divide the day: slots from midnight, the last one cut short
             (day + 86394, 7, day + 86400), (day + 86400, 7, day + 86407), (day + 10, 7, day + 14),
             (day + 1, 86400, day + 86400), (day - 0.5, 3600, day)]
    for t, iv, want in cases:
        got = ocppj.next_aligned(int(t * 1000 + 0.5), iv)
        assert type(got) is int and got == want * 1000, (t, iv, got, want)
    assert ocppj.iso_ms(ocppj.next_aligned(day * 1000 + 1234567, 60)) == "2026-11-25T00:21:00.000Z"


# --- configuration keys ---------------------------------------------------------------------

_OCFG = {"heartbeat_s": 300, "meter_interval_s": 60, "connection_timeout_s": 45, "clock_aligned_s": 0}


def check_keys__defaults_change_persist_and_answers():
    k = ocpp_keys.Keys(_OCFG)
    assert (k["HeartbeatInterval"], k["MeterValueSampleInterval"], k["ConnectionTimeOut"]) == (300, 60, 45)
    assert k.change("HeartbeatInterval", "42") == "Accepted"
    assert k.change("MeterValuesSampledData", "Voltage,Energy.Active.Import.Register") == "Accepted"
    assert k.change("AuthorizeRemoteTxRequests", "TRUE") == "Accepted"
    assert k.change("HeartbeatInterval", "soon") == "Rejected"
    assert k.change("HeartbeatInterval", "0") == "Rejected"
    assert k.change("MeterValuesSampledData", "SoC") == "Rejected"
    assert k.change("NumberOfConnectors", "2") == "Rejected"
    assert k.change("NoSuchKey", "1") == "NotSupported"
    assert k.change("ConnectorPhaseRotation", "RST") == "RebootRequired"
    # clock-aligned data: the interval's default from the config (ocpp.clock_aligned_s)
    assert ocpp_keys.Keys(dict(_OCFG, clock_aligned_s=900), "other.json")["ClockAlignedDataInterval"] == 900
    # measurands checked like MeterValuesSampledData, each list its own
    # ...MaxLength; StopTxnAlignedData is not put in transactionData (max length 0)
    assert k.measurands("MeterValuesAlignedData") == ["Energy.Active.Import.Register", "Temperature"]
    assert k["ClockAlignedDataInterval"] == 0
    assert k.change("ClockAlignedDataInterval", "900") == "Accepted"
    assert k.change("ClockAlignedDataInterval", "-1") == "Rejected"
    assert k.change("MeterValuesAlignedData", "Temperature,Humidity") == "Rejected"
    assert k.change("MeterValuesAlignedData", "Temperature, Voltage") == "Accepted"
    assert k.change("StopTxnAlignedData", "Voltage") == "Rejected"
    assert k.change("StopTxnAlignedData", "") == "Accepted"
    assert k.change("StopTxnSampledData", ocppj.DEFAULT_MEASURANDS) == "Accepted"
    assert k.change("StopTxnSampledData", ocppj.DEFAULT_MEASURANDS + ",Voltage") == "Rejected"
    assert k.change("MeterValuesAlignedDataMaxLength", "9") == "Rejected"
    # persisted: a reboot (new instance over the same flash) reads the changes back
    k2 = ocpp_keys.Keys(_OCFG)
    assert (k2["HeartbeatInterval"], k2["AuthorizeRemoteTxRequests"]) == (42, True)
    assert k2.measurands() == ["Voltage", "Energy.Active.Import.Register"]
    assert (k2["ClockAlignedDataInterval"], k2["MeterValuesAlignedData"]) == (900, "Temperature,Voltage")
    got = k2.get_configuration(["HeartbeatInterval", "Nope", "NumberOfConnectors"])
    assert got == {"configurationKey": [
        {"key": "HeartbeatInterval", "readonly": False, "value": "42"},
        {"key": "NumberOfConnectors", "readonly": True, "value": "1"}], "unknownKey": ["Nope"]}, got
    everything = k2.get_configuration()["configurationKey"]
    names = ocpp_keys.names()
    assert len(everything) == len(names) == 36 and "unknownKey" not in k2.get_configuration()
    assert names == sorted(names) and [d["key"] for d in everything] == names
    assert (k2["MeterValuesSampledData"], k2["MeterValuesAlignedData"]) != (ocppj.DEFAULT_MEASURANDS, None)
    assert ocpp_keys.Keys(_OCFG, "fresh.json")["MeterValuesSampledData"] == ocppj.DEFAULT_MEASURANDS
    fresh = ocpp_keys.Keys(_OCFG, "fresh.json")
    assert fresh["MeterValuesAlignedData"] == ocppj.DEFAULT_ALIGNED and fresh["StopTxnAlignedData"] == ""
    assert len(fresh.get_configuration()["configurationKey"]) == 36
    smart = k2.get_configuration(["MaxChargingProfilesInstalled", "ChargeProfileMaxStackLevel"])["configurationKey"]
    assert [(d["key"], d["readonly"], d["value"]) for d in smart] == [
        ("MaxChargingProfilesInstalled", True, "8"), ("ChargeProfileMaxStackLevel", True, "8")], smart
    assert k2.change("ChargingScheduleMaxPeriods", "99") == "Rejected"
    # a name that would span the table's lines is no key, and nothing of it is kept
    for odd in ("ConnectionTimeOut|i|w||1\nConnectorPhaseRotation", "HeartbeatInterval|", "|", ""):
        assert k2.change(odd, "5") == "NotSupported", odd
        assert k2.get_configuration([odd]) == {"unknownKey": [odd]}, odd
    assert not any("|" in n or "\n" in n for n in k2.changed)
    # a corrupt file (power cut while writing is prevented by tmp+rename, but a bad edit) is ignored
    for junk in ("{torn", "[1, 2]", '{"keys": [1], "extra": 5}', '{"keys": {"HeartbeatInterval": 9}}'):
        with open(ocpp_keys.KEYS_FILE, "w") as f:
            f.write(junk)
        assert ocpp_keys.Keys(_OCFG)["HeartbeatInterval"] == 300, junk


# --- journal --------------------------------------------------------------------------------

def _mv(n):
    return {"connectorId": 1, "meterValue": [{"timestamp": "t%d" % n, "sampledValue": []}]}


def check_journal__order_done_and_replay_after_power_cut():
    j = journal.Journal("j.log").load()
    ref = j.open_tx({"tag": "T", "ms": 5})
    s1 = j.add(journal.K_START, "m-1", "StartTransaction", {"idTag": "T"}, ref)
    s2 = j.add(journal.K_METER, "m-2", "MeterValues", _mv(2), ref)
    s3 = j.add(journal.K_METER, "m-3", "MeterValues", _mv(3), ref)
    e = j.first()
    assert e[:4] + e[5:] == (s1, journal.K_START, "m-1", "StartTransaction", ref), e
    assert bytes(e[4]) == b'{"idTag": "T"}', bytes(e[4])
    j.set_txid(ref, 1001)
    j.done(s1)
    # power cut: a new instance replays the file
    j = journal.Journal("j.log").load()
    e = j.first()
    assert len(j) == 2 and e[:4] + e[5:] == (s2, journal.K_METER, "m-2", "MeterValues", ref), e
    assert json.loads(bytes(e[4])) == _mv(2), e
    assert j.txid(ref) == 1001 and j.open == {ref: {"tag": "T", "ms": 5}}, (j.txids, j.open)
    j.done(s2)
    s4 = j.add(journal.K_STOP, "m-4", "StopTransaction", {"meterStop": 9}, ref)
    j.close_tx(ref)
    assert s4 > s3
    # a torn last record (power cut mid-write) is ignored; the rest survives
    with open("j.log", "ab") as f:
        f.write(b"A 99|1|0|m-99|MeterVal")
    j = journal.Journal("j.log").load()
    assert [p[0] for p in j.pending] == [s3, s4] and j.open == {}, j.pending
    j.done(s3)
    j.done(s4)
    j = journal.Journal("j.log").load()
    assert len(j) == 0 and j.next_seq > s4 and j.next_txref > ref, (j.next_seq, j.next_txref)
    assert os.stat("j.log")[6] < 64, "settled journal compacts to its counters"


def check_journal__non_ascii_payload_offsets_stay_right():
    # an idTag from the central system may be any text: offsets count bytes, not characters
    j = journal.Journal("u.log").load()
    s1 = j.add(journal.K_START, "m-1", "StartTransaction", {"idTag": "Zo\u00eb-\u20ac"}, 1)
    j.add(journal.K_METER, "m-2", "MeterValues", {"a": 1}, 1)
    assert json.loads(bytes(j.first()[4]).decode()) == {"idTag": "Zo\u00eb-\u20ac"}
    j.done(s1)
    e = j.first()
    assert (e[2], bytes(e[4])) == ("m-2", b'{"a": 1}'), e
    e = journal.Journal("u.log").load().first()  # after a reboot (the file is compacted)
    assert (e[2], bytes(e[4])) == ("m-2", b'{"a": 1}'), e


def check_journal__bounded_drops_oldest_samples_keeps_start_stop():
    j = journal.Journal("b.log", max_entries=4).load()
    ref = j.open_tx({})
    j.add(journal.K_START, "s", "StartTransaction", {}, ref)
    for n in range(5):
        j.add(journal.K_METER, "m%d" % n, "MeterValues", _mv(n), ref)
    j.add(journal.K_STOP, "e", "StopTransaction", {}, ref)
    j2 = journal.Journal("b.log", max_entries=4).load()
    for jj in (j, j2):
        kinds = [p[3] for p in jj.pending]
        assert kinds == [journal.K_START, journal.K_METER, journal.K_METER, journal.K_STOP], kinds
    assert j.dropped == 3
    mids = []
    while len(j2):
        e = j2.first()
        mids.append(e[2])
        j2.done(e[0])
    assert mids == ["s", "m3", "m4", "e"], mids


def check_journal__compaction_keeps_what_is_needed():
    j = journal.Journal("c.log", compact_bytes=600).load()
    ref = j.open_tx({"tag": "A"})
    j.add(journal.K_START, "s", "StartTransaction", {"x": "y" * 50}, ref)
    j.set_txid(ref, 7)
    for n in range(12):
        j.add(journal.K_METER, "m%d" % n, "MeterValues", _mv(n), ref)
        e = j.first()
        j.done(e[0])
    assert os.stat("c.log")[6] <= 600 + 200, os.stat("c.log")[6]
    j = journal.Journal("c.log").load()
    assert j.txid(ref) == 7 and j.open[ref] == {"tag": "A"} and len(j) == 1, (j.txids, j.open, j.pending)
    assert j.first()[2] == "m11"


def check_journal__first_reads_the_call_frame_from_flash_in_place():
    # what the charge point sends: the journalled payload read straight into its CALL frame,
    # the transaction id put in, room for the WebSocket header in front
    j = journal.Journal("f.log").load()
    ref = j.open_tx({"tag": "T"})
    s1 = j.add(journal.K_METER, "m-1", "MeterValues", {"connectorId": 1, "meterValue": []}, ref)
    j.add(journal.K_STOP, "m-2", "StopTransaction", {}, ref)
    seq, kind, mid, action, frame, txref = j.first(ocppj.call_frame, 1001, ws.HEADROOM)
    assert (seq, kind, mid, action, txref) == (s1, journal.K_METER, "m-1", "MeterValues", ref)
    got = bytes(frame[ws.HEADROOM:])
    assert got.startswith(b'[2, "m-1", "MeterValues", {"transactionId": 1001, "') and json.loads(
        got.decode()) == [2, "m-1", "MeterValues", {"transactionId": 1001, "connectorId": 1,
                                                    "meterValue": []}], frame
    j.done(s1)
    frame = j.first(ocppj.call_frame, 7)[4]
    assert bytes(frame) == b'[2, "m-2", "StopTransaction", {"transactionId": 7}]', frame
    frame = j.first(ocppj.call_frame)[4]
    assert bytes(frame) == b'[2, "m-2", "StopTransaction", {}]', frame
    # in the buffer kept for it when the frame fits, in a new one when not
    keep = bytearray(80)
    frame = j.first(ocppj.call_frame, 7, ws.HEADROOM, keep)[4]
    assert isinstance(frame, memoryview) and bytes(frame[ws.HEADROOM:]) == bytes(keep[ws.HEADROOM:len(frame)]) \
        == b'[2, "m-2", "StopTransaction", {"transactionId": 7}]', bytes(keep)
    at = ws.prepare(frame, ws.OP_TEXT, b"\x00\x00\x00\x00")  # the WebSocket frame, in place
    assert (keep[at], keep[at + 1]) == (0x81, 0x80 | (len(frame) - ws.HEADROOM)), bytes(keep)
    frame = j.first(ocppj.call_frame, 7, ws.HEADROOM, bytearray(40))[4]
    assert isinstance(frame, bytearray) and bytes(frame[ws.HEADROOM:]) == \
        b'[2, "m-2", "StopTransaction", {"transactionId": 7}]', frame


# --- connector: the status state machine ----------------------------------------------------

def check_connector__status_follows_the_transaction_relay_and_current():
    st = state.State()
    c = connector.Connector(st)
    assert (c.status(0), c.status(1)) == (("Available", "NoError"), ("Available", "NoError"))
    assert c.free()
    c.preparing = True
    assert c.status(1) == ("Preparing", "NoError") and not c.free()
    c.preparing = False
    st.readings_seq = 10
    c.started({"ref": 1})
    assert c.status(1) == ("SuspendedEVSE", "NoError") and not c.free()  # relay not closed yet
    st.relay = True
    assert c.update(True) == "Charging"
    st.readings_seq = 11  # the EV gets one sample to start drawing
    st.values[fields.CURRENT] = 0.1
    assert c.update(True) == "Charging"
    st.readings_seq = 12
    assert c.update(True) == "SuspendedEV"
    st.values[fields.CURRENT] = 16.0
    assert c.update(True) == "Charging"
    st.fault = "HighTemperature"
    assert c.status(1) == ("Faulted", "HighTemperature") and c.status(0) == ("Available", "NoError")
    st.fault = None
    st.relay = False
    c.stopped()
    assert c.tx is None and c.update(True) == "Finishing"
    c.sent(0, "Finishing")
    assert c.update(True) == "Finishing"
    c.sent(1, "Finishing")  # the central system has seen it
    assert c.update(True) == "Available" and c.free()
    c.stopped()
    assert c.update(False) == "Available", "offline, Finishing ends at once"


def check_connector__availability_and_a_relay_that_recloses():
    st = state.State()
    c = connector.Connector(st)
    st.available = False
    assert c.status(0) == ("Unavailable", "NoError") and c.update(True) == "Unavailable"
    assert not c.free()
    st.available = True
    st.readings_seq = 5
    st.relay = True
    c.started({"ref": 2})
    assert c.update(True) == "Charging"  # the relay closed at sample 5
    st.values[fields.CURRENT] = 0.0
    st.readings_seq = 20
    assert c.update(True) == "SuspendedEV"
    st.relay = False  # opened (a fault), then closed again: the EV gets a sample once more
    assert c.update(True) == "SuspendedEVSE"
    st.relay = True
    assert c.update(True) == "Charging"
    st.readings_seq = 22
    assert c.update(True) == "SuspendedEV"


# --- ws: framing and handshake --------------------------------------------------------------

def check_ws__accept_key_rfc6455_example_and_handshake_bytes():
    assert ws_open.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    req = ws_open.handshake_request("cs.example", 9000, "/ocpp/CP-1", b"dGhlIHNhbXBsZSBub25jZQ==",
                               "ocpp1.6", ("CP-1", "s3cret"))
    assert req == (b"GET /ocpp/CP-1 HTTP/1.1\r\nHost: cs.example:9000\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
                   b"Authorization: Basic Q1AtMTpzM2NyZXQ=\r\n\r\n"), req
    assert ws_open.split_url("wss://h/a/b") == (True, "h", 443, "/a/b")
    assert ws_open.split_url("ws://h:81") == (False, "h", 81, "/")
    for bad in ("http://h/", "ws://:80/", "ws://h:x/"):
        raises(ValueError, ws_open.split_url, bad)


def check_ws__frames_masked_with_7_16_64_bit_lengths():
    mask = b"\x01\x02\x03\x04"
    f = encode_frame(ws.OP_TEXT, b"Hello", mask)
    assert bytes(f) == b"\x81\x85\x01\x02\x03\x04" + bytes(c ^ mask[i % 4] for i, c in enumerate(b"Hello")), f
    for n, head in ((125, b"\x81\xfd"), (126, b"\x81\xfe\x00\x7e"), (65535, b"\x81\xfe\xff\xff"),
                    (65536, b"\x81\xff\x00\x00\x00\x00\x00\x01\x00\x00")):
        data = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        f = encode_frame(ws.OP_TEXT, data, mask)
        assert bytes(f[:len(head)]) == head and len(f) == len(head) + 4 + n, (n, bytes(f[:12]))
        body = f[len(head) + 4:]
        assert bytes(body[i] ^ mask[i % 4] for i in range(0, n, 97)) == bytes(data[i] for i in range(0, n, 97)), n
    f = encode_frame(ws.OP_PING, b"", mask, fin=True)
    assert bytes(f) == b"\x89\x80\x01\x02\x03\x04"
    # a prepared buffer (call_raw with HEADROOM) becomes the frame in place; a str goes out
    # as its UTF-8 bytes
    buf = bytearray(ws.HEADROOM) + b"Hello"
    at = ws.prepare(buf, ws.OP_TEXT, mask)
    assert at == ws.HEADROOM - 6 and bytes(buf[at:]) == b"\x81\x85\x01\x02\x03\x04" + bytes(
        c ^ mask[i % 4] for i, c in enumerate(b"Hello")), buf
    buf = bytearray(ws.HEADROOM + 300)
    assert ws.prepare(buf, ws.OP_TEXT, mask) == ws.HEADROOM - 8 and bytes(buf[6:12]) == b"\x81\xfe\x01\x2c\x01\x02"
    assert bytes(encode_frame(ws.OP_TEXT, "h\u00e9", mask)) == bytes(encode_frame(ws.OP_TEXT, b"h\xc3\xa9", mask))


class _Out:
    """A stream writer that keeps what is written."""

    def __init__(self):
        self.out = bytearray()

    def write(self, b):
        self.out += b

    async def drain(self):
        pass


def _done(coro):
    """The value of a coroutine that never waits (no event loop needed)."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise AssertionError("the coroutine waited")


def _text_frame(f):
    """The payload of one masked client text frame (all of f)."""
    assert f[0] == 0x81 and f[1] & 0x80, bytes(f[:2])
    n, k = f[1] & 0x7F, 2
    if n == 126:
        n, k = (f[2] << 8) | f[3], 4
    mask = f[k:k + 4]
    body = f[k + 4:]
    assert len(body) == n, (len(body), n)
    return bytes(body[i] ^ mask[i & 3] for i in range(n)).decode()


def check_ws__answers_sent_in_pieces_are_the_whole_json_in_one_frame():
    # ocpp_link sends every CALLRESULT with send_pieces: small parts through a 256-byte
    # buffer, the mask carried on across parts and buffers; the frame is the answer's JSON
    keys = [{"key": "K%02d" % i, "readonly": i % 2 == 0, "value": "v\u00e9" * (i % 7)} for i in range(50)]
    for payload in ({"status": "Accepted"}, {}, {"configurationKey": keys, "unknownKey": ["X", "Y"]},
                    {"configurationKey": keys[:2]}, {"a": [], "b": [[1, 2], {"c": None}]}):
        w = _Out()
        c = ws.WebSocket(None, w)
        _done(c.send_pieces(ocppj.result_pieces("m-7", payload)))
        assert json.loads(_text_frame(w.out)) == [ocppj.CALLRESULT, "m-7", payload], bytes(w.out[:80])
    w = _Out()
    _done(ws.WebSocket(None, w).send_pieces(ocppj.result_pieces("m-8", {"configurationKey": keys})))
    assert w.out[1] == 0x80 | 126 and len(w.out) > 2000, bytes(w.out[:4])   # 16-bit length
    # a closed connection sends nothing
    c = ws.WebSocket(None, _Out())
    c.closed = True
    raises(ws.WsError, _done, c.send_pieces(ocppj.result_pieces("m-9", {})))


CHECKS = checkrun.checks(globals())

if __name__ == "__main__":
    checkrun.main(CHECKS, scratch=True)
