"""Property-based tests (hypothesis) for the gateway's parsers at the door (issue 10): the OCPP
frame path (StationSession.route_message), ingest (readings.reading_from_fields), MQTT telemetry
(MqttUplink._on_message, readings.reading_from_dict) and the number/timestamp checks. Whatever
comes in, nothing raises but the documented ValueError (or, for OCPP, a CALLERROR on the wire);
valid input round-trips. Derandomized: the same examples on every run."""
import asyncio
import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.exceptions import PropertyConstraintViolationError, TypeConstraintViolationError

from support.stations import has_nul
from picocharge.firmware import fields
from picocharge.gateway import csms, readings
from picocharge.gateway.uplinks import MqttUplink

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# --- values anybody may send ----------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-10 ** 400, max_value=10 ** 400),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.sampled_from(["NaN", "nan", "inf", "-Infinity", "1e999", "-1e999", "1_000", " 5 ", "0x10",
                                     "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-30T00:00:00Z"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=12)
keys = st.sampled_from(fields.READING_KEYS)
_WINDOW_START = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _now():
    return datetime.now(timezone.utc).replace(microsecond=0)


in_window = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2026, 11, 1),
                         timezones=st.just(timezone.utc)).map(lambda d: d.replace(microsecond=0))


def in_range(key):
    lo, hi = readings.RANGES[key]
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


readings_in_range = st.fixed_dictionaries({}, optional={k: in_range(k) for k in fields.READING_KEYS}).filter(bool)


# --- numbers and timestamps ----------------------------------------------------------------
@SETTINGS
@given(keys, scalars)
def test_readings__number_is_a_finite_value_in_range_or_a_valueerror_naming_the_field(key, v):
    try:
        f = readings.number(key, v, "fieldX")
    except ValueError as e:
        assert str(e).startswith("fieldX "), e
        return
    lo, hi = readings.RANGES[key]
    assert isinstance(f, float) and math.isfinite(f) and lo <= f <= hi, (v, f)


@SETTINGS
@given(keys, st.data())
def test_readings__number_round_trips_every_value_in_range(key, data):
    v = data.draw(in_range(key))
    assert readings.number(key, v) == v
    assert readings.number(key, repr(v)) == v


@SETTINGS
@given(scalars)
def test_readings__timestamp_is_in_the_window_or_a_valueerror(v):
    try:
        ts = readings.timestamp(v)
    except ValueError as e:
        assert "created_at/ts" in str(e), e
        return
    d = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert _WINDOW_START <= d <= _now() + timedelta(seconds=readings.MAX_FUTURE_S + 2), ts


@SETTINGS
@given(in_window, st.sampled_from(["Z", "+00:00", "+05:30", "-08:00"]), st.booleans())
def test_readings__timestamp_round_trips_a_time_in_the_window(d, zone, fraction):
    offset = timedelta(0) if zone in ("Z", "+00:00") else timedelta(hours=int(zone[:3]), minutes=int(zone[4:]))
    local = (d + offset).replace(tzinfo=None)
    text = local.isoformat() + (".250" if fraction else "") + zone
    want = d.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert readings.timestamp(text) == want, text
    assert csms.station_ts(text) == want, text


@SETTINGS
@given(scalars)
def test_csms__station_ts_is_a_time_in_the_window_or_an_ocpp_error(v):
    try:
        ts = csms.station_ts(v)
    except (TypeConstraintViolationError, PropertyConstraintViolationError) as e:
        assert e.description, e
        return
    assert readings.EARLIEST_TS <= ts <= readings.latest_ts(), ts


# --- ingest ---------------------------------------------------------------------------------
field_names = st.sampled_from(["field%d" % n for n in range(1, 9)] + ["created_at", "api_key", "other"])


@SETTINGS
@given(st.dictionaries(field_names, scalars, max_size=9))
def test_ingest__reading_from_fields_gives_a_row_or_a_valueerror(params):
    _row_or_valueerror(readings.reading_from_fields, params)


@SETTINGS
@given(readings_in_range, st.sampled_from(fields.STATUSES), in_window)
def test_ingest__reading_from_fields_round_trips_thingspeak_fields(r, status, d):
    params = {name: repr(v) for name, v in fields.thingspeak_fields(r)}
    params["field8"] = str(fields.status_code(status))
    params["created_at"] = d.strftime("%Y-%m-%d %H:%M:%S")
    row = readings.reading_from_fields(params)
    assert row == dict(r, status=status, ts=d.strftime("%Y-%m-%dT%H:%M:%SZ")), (params, row)


def _row_or_valueerror(parse, arg):
    """parse(arg) gives a row of checked readings, or a ValueError that says something."""
    try:
        row = parse(arg)
    except ValueError as e:
        assert str(e), e
        return
    _assert_row(row)


def _assert_row(row):
    assert set(row) <= set(fields.READING_KEYS) | {"status", "ts"} and "ts" in row, row
    for k in fields.READING_KEYS:
        if k in row:
            lo, hi = readings.RANGES[k]
            assert lo <= row[k] <= hi, row
    json.dumps(row, allow_nan=False)


# --- MQTT telemetry -------------------------------------------------------------------------
@SETTINGS
@given(st.dictionaries(st.sampled_from(fields.READING_KEYS + ("status", "ts", "src", "seq")), json_values,
                       max_size=6))
def test_mqtt__reading_from_dict_gives_a_row_or_a_valueerror(d):
    _row_or_valueerror(readings.reading_from_dict, d)


@SETTINGS
@given(readings_in_range, st.sampled_from(fields.STATUSES), in_window)
def test_mqtt__the_firmwares_telemetry_json_round_trips(r, status, d):
    ts = d.strftime("%Y-%m-%dT%H:%M:%SZ")
    payload = fields.telemetry_json(dict(r, status=status, ts=ts))
    assert readings.reading_from_dict(json.loads(payload)) == dict(r, status=status, ts=ts), payload


class _Gw:
    """What the ingest and OCPP paths use of the gateway, recording what would be stored."""

    def __init__(self):
        self.stations = {"CP-1": {"state": "accepted"}}     # the session's station, accepted
        self.settings = type("S", (), {"auth": "none", "heartbeat_interval": 300})()
        self.metrics = type("M", (), {"messages": 0, "ingest": {"mqtt": 0}, "dropped_answers": 0})()
        self.stored = []
        self.cluster = None     # one process (the MQTT uplink publishes retained in a cluster only)

    async def store_readings(self, sid, rows, source):
        self.stored.append((sid, rows))
        return list(range(len(rows)))

    async def register(self, sid, *a, **kw):
        self.stations[sid] = {"state": "accepted"}

    async def boot(self, *a):
        return "accepted"

    def booted(self, sess):     # the configuration check after an accepted boot: none here
        pass

    def resumed(self, sess):    # a station back without a boot: no local list to sync here
        pass

    async def status_changed(self, *a):
        pass

    async def id_tag_status(self, tag):
        return "Accepted"

    async def start_transaction(self, *a):
        return 1

    async def stop_transaction(self, *a):
        pass

    async def event(self, *a):
        pass


class _Loop:
    def __init__(self):
        self.tasks = []

    def create_task(self, coro):
        self.tasks.append(coro)


@pytest.fixture
def uplink():
    up = MqttUplink(_Gw(), "mqtt://127.0.0.1:1/pc")
    up.loop = _Loop()
    yield up
    for c in up.loop.tasks:
        c.close()


payloads = st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                     st.dictionaries(st.sampled_from(fields.READING_KEYS + ("status", "ts")), json_values,
                                     max_size=5).map(lambda v: json.dumps(v).encode()),
                     st.integers(1, 60000).map(lambda n: b"[" * n + b"]" * n))


@SETTINGS
@given(payloads)
def test_mqtt__no_payload_escapes_the_message_callback(uplink, payload):
    before = uplink.dropped + len(uplink.loop.tasks)
    uplink._on_message("pc/CP-1/telemetry", payload)      # never raises
    assert uplink.dropped + len(uplink.loop.tasks) == before + 1 or payload.endswith(b',"src":"gateway"}') or \
        _is_own(payload), payload[:80]


def _is_own(payload):
    try:
        d = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return isinstance(d, dict) and d.get("src") == "gateway"


# --- the OCPP frame path --------------------------------------------------------------------
class _Conn:
    def __init__(self):
        self.sent = []

    async def send(self, text):
        self.sent.append(text)


_CODES = {"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
          "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
          "TypeConstraintViolation", "GenericError"}
actions = st.sampled_from(["BootNotification", "Heartbeat", "MeterValues", "StartTransaction", "StopTransaction",
                           "StatusNotification", "DataTransfer", "Authorize", "Nope"])
payload_dicts = st.dictionaries(st.sampled_from(["connectorId", "meterValue", "timestamp", "meterStart", "idTag",
                                                 "transactionId", "meterStop", "vendorId", "messageId", "data",
                                                 "errorCode", "status", "sampledValue", "value"]), json_values,
                                max_size=5)
frames = st.one_of(st.text(max_size=200), json_values.map(json.dumps),
                   st.tuples(st.sampled_from([2, 3, 4, 5, "2"]), st.text(max_size=8), actions, payload_dicts)
                   .map(lambda t: json.dumps(list(t))),
                   st.integers(1, 60000).map(lambda n: "[" * n + "]" * n))


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _session(loop):
    async def make():
        return csms.StationSession("CP-1", _Conn(), _Gw())
    return loop.run_until_complete(make())


def _strict(text):
    def refuse(c):
        raise AssertionError("not JSON: %s" % c)
    return json.loads(text, parse_constant=refuse)


@SETTINGS
@given(frames)
def test_ocpp__every_frame_gets_at_most_one_answer_that_is_json_and_never_an_exception(loop, frame):
    sess = _session(loop)
    loop.run_until_complete(sess.route_message(frame))
    assert len(sess._connection.sent) <= 1, sess._connection.sent
    for text in sess._connection.sent:
        out = _strict(text)
        assert isinstance(out, list) and out[0] in (3, 4), out
        if out[0] == 4:
            assert out[2] in _CODES and len(out) == 5, out
    for _sid, rows in sess.gw.stored:
        for row in rows:
            _assert_row(row)


measurands = st.sampled_from([("Current.Import", "A", "current_a", 1), ("Voltage", "V", "voltage_v", 1),
                              ("Power.Active.Import", "W", "power_w", 1),
                              ("Power.Active.Import", "kW", "power_w", 1000),
                              ("Energy.Active.Import.Register", "Wh", "energy_wh", 1),
                              ("Energy.Active.Import.Register", "kWh", "energy_wh", 1000)])


@SETTINGS
@given(st.lists(st.tuples(measurands, st.data()), min_size=1, max_size=4, unique_by=lambda t: t[0][2]), in_window)
def test_ocpp__valid_meter_values_are_stored_as_sent(loop, values, d):
    sv, want = [], {}
    for (m, unit, key, scale), data in values:
        lo, hi = readings.RANGES[key]
        v = data.draw(st.floats(min_value=max(lo / scale, -1e9), max_value=hi / scale, allow_nan=False))
        sv.append({"value": repr(v), "measurand": m, "unit": unit})
        want[key] = v * scale
    ts = d.strftime("%Y-%m-%dT%H:%M:%SZ")
    sess = _session(loop)
    frame = json.dumps([2, "m1", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": ts,
                                                                                    "sampledValue": sv}]}])
    loop.run_until_complete(sess.route_message(frame))
    assert sess._connection.sent == ['[3,"m1",{}]'], sess._connection.sent
    assert sess.gw.stored == [("CP-1", [dict(want, ts=ts, status=None)])], sess.gw.stored


# --- the schema check ------------------------------------------------------------------------
_SCHEMA_ACTIONS = ["BootNotification", "Heartbeat", "MeterValues", "StartTransaction", "StopTransaction",
                   "StatusNotification", "DataTransfer", "Authorize", "FirmwareStatusNotification"]


@SETTINGS
@given(st.sampled_from(_SCHEMA_ACTIONS), payload_dicts)
def test_validate__a_payload_is_valid_exactly_when_draft4_says_so_and_is_refused_with_an_ocpp_error(action, payload):
    from jsonschema import Draft4Validator
    from ocpp.exceptions import OCPPError

    from picocharge.gateway import validate
    with open("%s/%s.json" % (validate._SCHEMAS, action), encoding="utf-8-sig") as f:
        schema = json.load(f)
    try:
        validate.request(action, payload)
        ok = True
    except OCPPError as e:
        assert e.code in _CODES | {"FormatViolation", "OccurrenceConstraintViolation",
                                   "PropertyConstraintViolation"} and e.description, e
        ok = False
    # one rule more than the schemas: no text holds U+0000 (no database text column takes it)
    assert ok == (Draft4Validator(schema).is_valid(payload) and not has_nul(payload)), (action, payload)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_readings__normalised_times_sort_as_text_as_they_do_in_time(a, b):
    # the exports compare these strings in SQL: strftime's %Y wrote year 999 as "999", which
    # sorted after "2026" (found attacking /api/readings.csv?to=0999-01-01T00:00:00Z)
    ta, tb = (readings._ts(d.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + "Z") for d in (a, b))
    assert (ta < tb) == (a.replace(microsecond=0) < b.replace(microsecond=0)), (a, b, ta, tb)
    assert len(ta) == len(tb) == 20, (ta, tb)
