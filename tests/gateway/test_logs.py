"""What the gateway's log must never hold: ThingSpeak write keys (even at --log-level debug) and,
at the default level, the OCPP frames (id tags, configuration values)."""
import asyncio

from ocpp.v16 import call

from support.gwhttp import basic, http
from support.fake_thingspeak import FakeThingSpeak
from support.net import free_port
from support.stations import Connected, boot
from support.tsreadings import _clean, _entries, _send, _until


def _gateway(tmp_path, *extra):
    from picocharge.cmd_demo import GatewayProcess
    return GatewayProcess(tmp_path / "gw.db", port=free_port(), extra=("--auth", "none") + extra).start()


async def test_logs__thingspeak_write_key_never_logged_at_debug(tmp_path):
    key = "WKEYSECRET000042"
    fake = FakeThingSpeak(min_interval=0.2).start()
    ch = fake.add_channel(key)
    gw = await asyncio.to_thread(_gateway, tmp_path, "--log-level", "debug", "--thingspeak-url", fake.url,
                                 "--thingspeak-interval", "0.2")
    port = int(gw.url.rsplit(":", 1)[1])
    try:
        s, out = await http(port, "POST", "/api/stations", {"id": "CP-1", "thingspeak_channel": ch.id,
                                                            "thingspeak_key": key})
        assert s == 201, out
        async with Connected(port, "CP-1") as cp:
            await boot(cp)
            await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            await _send(cp, 1, 1)                       # a single write: the key in the query string
            assert await _until(lambda: len(fake.entries(ch.id)) == 1), fake.requests
            await _send(cp, 2, 5)                       # single and bulk writes
            assert await _until(lambda: len(fake.entries(ch.id)) == 6), fake.requests
            fake.bad_header = True                      # urllib3 warns, with the URL
            await _send(cp, 7, 1)
            assert await _until(lambda: len(fake.entries(ch.id)) == 7), fake.requests
            await asyncio.sleep(0.3)
    finally:
        gw.stop()
        fake.stop()
    assert _clean(fake.entries(ch.id)) == _entries(1, 7), fake.entries(ch.id)
    assert any(p == "/update" and b.get("api_key") == key for _m, p, b in fake.requests), fake.requests
    log = "\n".join(gw.log)
    assert " DEBUG " in log, log[-3000:]                 # the level really was debug
    assert "Failed to parse headers" in log and "api_key=***" in log, log[-3000:]
    leaks = [line for line in gw.log if key in line]
    assert not leaks, leaks


_KEY = "c0ffee0815c0ffee0815c0ffee0815c0ffee0815"    # an AuthorizationKey: 20 bytes in hex


async def _commands(port, value, tag, headers=None):
    async with Connected(port, "CP-1", headers=headers) as cp:
        await boot(cp)
        s, out = await http(port, "POST", "/api/stations/CP-1/change-configuration",
                            {"key": "AuthorizationKey", "value": value})
        assert (s, out) == (200, {"status": "Accepted"}), out
        s, out = await http(port, "POST", "/api/stations/CP-1/remote-start", {"id_tag": tag})
        assert (s, out) == (200, {"status": "Accepted"}), out
        assert cp.received == [("ChangeConfiguration", "AuthorizationKey", value),
                               ("RemoteStartTransaction", tag)], cp.received


async def test_logs__ocpp_frames_not_logged_at_the_default_level(tmp_path):
    gw = await asyncio.to_thread(_gateway, tmp_path, "--thingspeak-url", "")
    try:
        await _commands(int(gw.url.rsplit(":", 1)[1]), _KEY, "TAG-SECRET-1")
    finally:
        gw.stop()
    log = "\n".join(gw.log)
    assert "station=CP-1 command ChangeConfiguration" in log, log     # the gateway's own line, no value
    leaks = [line for line in gw.log if _KEY in line or "TAG-SECRET-1" in line]
    assert not leaks, leaks


async def test_logs__ocpp_frames_logged_at_debug_but_never_the_password(tmp_path):
    """--log-level debug is for looking at a station's frames: they are there (docs/gateway.md);
    the handshake's headers are too, but not the Basic credentials (the station's password)."""
    gw = await asyncio.to_thread(_gateway, tmp_path, "--thingspeak-url", "", "--log-level", "debug",
                                 "--auth", "password")
    port = int(gw.url.rsplit(":", 1)[1])
    try:
        s, out = await http(port, "POST", "/api/stations", {"id": "CP-1", "password": "station-pw-4711-ab"})
        assert s == 201, out
        hdr = basic("CP-1", "station-pw-4711-ab")
        await _commands(port, _KEY, "TAG-SECRET-1", headers=hdr)
    finally:
        gw.stop()
    # the gateway's own line per frame, with the station id; the AuthorizationKey value masked
    sent = [line for line in gw.log if " picocharge.gateway.frames: station=CP-1 send [2," in line]
    assert any('"key":"AuthorizationKey","value":"***"' in line for line in sent) and \
        any("TAG-SECRET-1" in line for line in sent), "\n".join(gw.log[-40:])
    assert not [line for line in gw.log if _KEY in line], "\n".join(gw.log[-40:])
    assert any("station=CP-1 handshake from 127.0.0.1" in line for line in gw.log), "\n".join(gw.log[-40:])
    b64 = hdr["Authorization"].split()[1]
    leaks = [line for line in gw.log if "station-pw-4711-ab" in line or b64 in line]
    assert not leaks, leaks


async def test_logs__a_late_answer_is_logged_without_its_payload(gateway, caplog):
    """A station answers GetConfiguration after the gateway gave up (504): ocpp logs the answer when
    it finds it in front of the next one, at ERROR; below debug without the configuration values."""
    from ocpp.routing import on
    from ocpp.v16 import call_result
    from ocpp.v16.enums import Action
    from support.stations import TestStation

    class SlowStation(TestStation):
        @on(Action.get_configuration)
        async def on_get_configuration(self, **kw):
            await asyncio.sleep(1.5)
            return call_result.GetConfiguration(configuration_key=[
                {"key": "AuthorizationKey", "readonly": False, "value": "cfg-late-secret"}])

    gw = await gateway(response_timeout=1.0)
    async with Connected(gw.port, "CP-1", cls=SlowStation) as cp:
        await boot(cp)
        s, out = await http(gw, "POST", "/api/stations/CP-1/get-configuration", {})
        assert s == 504, out
        s, out = await http(gw, "POST", "/api/stations/CP-1/change-configuration",
                            {"key": "MeterValueSampleInterval", "value": 10})
        assert (s, out) == (200, {"status": "Accepted"}), out
    late = [r for r in caplog.records if r.name == "ocpp" and "unknown unique id" in r.getMessage()]
    assert len(late) == 1 and late[0].levelname == "ERROR", [r.getMessage() for r in caplog.records]
    assert late[0].getMessage() == ("Ignoring response with unknown unique id: %s (a late answer; its payload is "
                                    "only logged at --log-level debug)" % late[0].args[0]), late[0].getMessage()
    assert "cfg-late-secret" not in caplog.text, caplog.text
