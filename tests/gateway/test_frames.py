"""--log-level debug shows every OCPP frame, in and out, whole, with the station id (websockets' own
lines are cut to ~75 characters and carry no id), on the logger picocharge.gateway.frames; the
value of AuthorizationKey (ChangeConfiguration, a GetConfiguration answer) never."""
import json
import logging

from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from support import stations
from support.stations import Connected, boot, meter

SECRET = "AUTHKEY-0123456789abcdef0123456789abcdef"


class Station(stations.TestStation):
    @on(Action.get_configuration)
    def on_get_configuration(self, **kw):
        return call_result.GetConfiguration(configuration_key=[
            {"key": "AuthorizationKey", "readonly": False, "value": SECRET},
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"}])


def _frames(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "picocharge.gateway.frames"]


def _j(*msg):
    return json.dumps(list(msg), separators=(",", ":"))


async def test_frames__every_frame_in_and_out_whole_with_the_station_id(gateway, caplog):
    caplog.set_level(logging.DEBUG, logger="picocharge.gateway.frames")
    gw = await gateway()
    mv = [meter("2026-01-01T10:00:%02dZ" % i, current=16.0 + i, voltage=230.0, power=3680.0, energy=1000.0 + i,
                temp=21.5) for i in range(20)]
    async with Connected(gw.port, "CP-7", cls=Station) as cp:
        await boot(cp)
        await cp.call(call.MeterValues(connector_id=1, meter_value=mv))
        await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Climate", data="not json"))
        sess = gw.sessions["CP-7"]
        sess._unique_id_generator = iter(["gw-1", "gw-2"]).__next__
        await sess.call(call.ChangeConfiguration(key="AuthorizationKey", value=SECRET))
        await sess.call(call.GetConfiguration())
    lines = _frames(caplog)
    assert all(line.startswith(("station=CP-7 recv ", "station=CP-7 send ")) for line in lines), lines
    recv = [json.loads(line[len("station=CP-7 recv "):]) for line in lines if " recv " in line]
    sent = [json.loads(line[len("station=CP-7 send "):]) for line in lines if " send " in line]
    assert [m[:3] for m in recv] == [[2, "CP-7-1", "BootNotification"], [2, "CP-7-2", "MeterValues"],
                                     [2, "CP-7-3", "DataTransfer"], [3, "gw-1", {"status": "Accepted"}],
                                     [3, "gw-2", {"configurationKey": [
                                         {"key": "AuthorizationKey", "readonly": False, "value": "***"},
                                         {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"}]}]], recv
    # whole: the MeterValues frame (about 3,000 characters) with every sample in it
    got = recv[1][3]["meterValue"]
    assert [(m["timestamp"], m["sampledValue"]) for m in got] == [(m["timestamp"], m["sampled_value"]) for m in mv] \
        and len(lines[2]) > 2500, lines[2]
    assert [m[:2] for m in sent] == [[3, "CP-7-1"], [3, "CP-7-2"], [3, "CP-7-3"], [2, "gw-1"], [2, "gw-2"]], sent
    assert sent[2][2]["status"] == "Rejected" and sent[3] == [2, "gw-1", "ChangeConfiguration",
                                                              {"key": "AuthorizationKey", "value": "***"}], sent
    assert SECRET not in caplog.text, [line for line in caplog.text.splitlines() if SECRET in line]
    # no other logger repeats the data frames (the WebSocket layer is aiohttp's, which logs none)
    others = [r.getMessage() for r in caplog.records if r.name != "picocharge.gateway.frames" and "CP-7-2" in
              r.getMessage() and "MeterValues" in r.getMessage()]
    assert not others, others


async def test_frames__nothing_logged_above_debug(gateway, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway()
    async with Connected(gw.port, "CP-7") as cp:
        await boot(cp)
    assert _frames(caplog) == [], _frames(caplog)


def test_frames__secret_values_masked_wherever_they_are():
    from picocharge.gateway.csms import frame_for_log
    assert frame_for_log(_j(2, "a", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "s3cr3t"})) == \
        _j(2, "a", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "***"})
    assert frame_for_log('[2,"a","ChangeConfiguration",{"key":"AuthorizationKey","value":"s3cr3t"') == \
        "(71 characters naming a secret configuration key, not JSON: not shown)"
    plain = _j(2, "a", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"})
    assert frame_for_log(plain) == plain and frame_for_log(plain.encode()) == plain
    big = "x" * 70000
    assert frame_for_log(big) == "x" * 65536 + "... (70000 characters)"
