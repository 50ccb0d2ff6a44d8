"""Configuration for every station from the gateway (issue 16, idle stations): the
--clock-aligned-interval setting applied at each station's boot when its value differs,
`POST /api/stations/-/configuration` and `picocharge gateway configure`. The gateway runs as
`picocharge gateway` (its real defaults); the stations are charge points built on the ocpp package."""
import asyncio
import json
import os
import subprocess
import sys

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from support import stations
from support.gwhttp import TEST_TOKEN, http
from support.stations import Connected, boot


class ConfigStation(stations.TestStation):
    """Keeps a configuration (`initial`, by station id) and records every call about it."""
    initial = {}

    def __init__(self, sid, ws):
        super().__init__(sid, ws)
        self.config = dict(self.initial.get(sid, {}))
        self.changed = asyncio.Event()

    @on(Action.get_configuration)
    def on_get_configuration(self, key=None, **kw):
        self.received.append(("GetConfiguration", tuple(key or ())))
        known = [{"key": k, "readonly": False, "value": v} for k, v in sorted(self.config.items())
                 if not key or k in key]
        unknown = [k for k in key or () if k not in self.config]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(self, key, value):
        self.received.append(("ChangeConfiguration", key, value))
        if key not in self.config:
            return call_result.ChangeConfiguration(status="NotSupported")
        self.config[key] = value
        self.changed.set()
        return call_result.ChangeConfiguration(status="Accepted")


class NoGetConfiguration(ConfigStation):
    """A charge point without GetConfiguration (it answers NotImplemented)."""

    def __init__(self, sid, ws):
        super().__init__(sid, ws)
        self.route_map.pop("GetConfiguration")


ConfigStation.initial = {"CP-OFF": {"ClockAlignedDataInterval": "0"},
                         "CP-900": {"ClockAlignedDataInterval": "900"},
                         "CP-NONE": {}}


def _gateway(tmp_path, *extra):
    from picocharge.cmd_demo import GatewayProcess
    return GatewayProcess(tmp_path / "gw.db", extra=("--auth", "none", "--thingspeak-url", "", *extra)).start()


def _port(gw):
    return int(gw.url.rsplit(":", 1)[1])


async def _until(pred, what, timeout=30):
    """Wait for the event `pred` says happened (bounded: a broken gateway fails, not hangs)."""
    async def poll():
        while not pred():
            await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError("never happened: " + what)


async def test_configure__clock_aligned_interval_given_at_boot_where_it_differs(tmp_path):
    gw = await asyncio.to_thread(_gateway, tmp_path)     # the default: --clock-aligned-interval 900
    try:
        port = _port(gw)
        async with Connected(port, "CP-OFF", cls=ConfigStation) as off, \
                Connected(port, "CP-900", cls=ConfigStation) as same, \
                Connected(port, "CP-NONE", cls=ConfigStation) as none, \
                Connected(port, "CP-OLD", cls=NoGetConfiguration) as old:
            for cp in (off, same, none, old):
                assert (await boot(cp)).status == "Accepted"
            # the gateway's line when it is done with a station: the event to wait for
            done = ["station=%s configuration checked at boot: ClockAlignedDataInterval %s" % x for x in
                    (("CP-OFF", "Accepted"), ("CP-900", "unchanged"), ("CP-NONE", "not reported"))] + [
                "station=CP-OLD answered the configuration check at boot with NotImplemented: left as it is"]
            await _until(lambda: all(any(d in line for line in gw.log) for d in done), "; ".join(done))
            assert off.received == [("GetConfiguration", ("ClockAlignedDataInterval",)),
                                    ("ChangeConfiguration", "ClockAlignedDataInterval", "900")], off.received
            assert off.config == {"ClockAlignedDataInterval": "900"}
            assert same.received == [("GetConfiguration", ("ClockAlignedDataInterval",))], same.received
            assert none.received == [("GetConfiguration", ("ClockAlignedDataInterval",))], none.received
            assert old.received == [] and old.config == {}, old.received
    finally:
        gw.stop()
    log = "\n".join(gw.log)
    assert "station=CP-OFF ClockAlignedDataInterval was 0: set to 900 at boot: Accepted" in log, log[-3000:]


async def test_configure__keep_leaves_the_stations_alone(tmp_path):
    gw = await asyncio.to_thread(_gateway, tmp_path, "--clock-aligned-interval", "keep")
    try:
        async with Connected(_port(gw), "CP-OFF", cls=ConfigStation) as cp:
            assert (await boot(cp)).status == "Accepted"
            # a command after the boot: had a check been sent at boot, it would have come first
            s, out = await http(_port(gw), "POST", "/api/stations/CP-OFF/get-configuration", {})
            assert s == 200, out
            assert cp.received == [("GetConfiguration", ())], cp.received
    finally:
        gw.stop()


def _configure(gw, *args):
    env = dict(os.environ, PICOCHARGE_GATEWAY_URL=gw.url, PICOCHARGE_GATEWAY_API_TOKEN=TEST_TOKEN)
    return subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway", "configure", *args],
                          capture_output=True, text=True, env=env, timeout=120)


async def test_configure__all_stations_through_the_api_and_the_cli(tmp_path):
    gw = await asyncio.to_thread(_gateway, tmp_path, "--clock-aligned-interval", "keep")
    try:
        port = _port(gw)
        s, out = await http(port, "POST", "/api/stations", {"id": "CP-AWAY"})     # registered, not connected
        assert s == 201, out
        async with Connected(port, "CP-OFF", cls=ConfigStation) as a, \
                Connected(port, "CP-900", cls=ConfigStation) as b, \
                Connected(port, "CP-NONE", cls=ConfigStation) as c:
            for cp in (a, b, c):
                assert (await boot(cp)).status == "Accepted"
            s, out = await http(port, "POST", "/api/stations/-/configuration",
                                {"key": "ClockAlignedDataInterval", "value": 300})
            assert (s, out) == (200, {
                "key": "ClockAlignedDataInterval", "value": "300",
                "stations": {"CP-900": {"status": "Accepted"}, "CP-AWAY": {"error": "not connected"},
                             "CP-NONE": {"status": "NotSupported"}, "CP-OFF": {"status": "Accepted"}},
                "counts": {"Accepted": 2, "NotSupported": 1, "not connected": 1}}), (s, out)
            assert a.config == b.config == {"ClockAlignedDataInterval": "300"}

            r = await asyncio.to_thread(_configure, gw, "--all", "ClockAlignedDataInterval=600")
            assert r.returncode == 1, r     # CP-AWAY did not get it, CP-NONE does not have the key
            assert r.stdout.splitlines() == [
                "CP-900               ClockAlignedDataInterval=600: Accepted",
                "CP-AWAY              ClockAlignedDataInterval=600: not connected",
                "CP-NONE              ClockAlignedDataInterval=600: NotSupported",
                "CP-OFF               ClockAlignedDataInterval=600: Accepted"], r.stdout
            assert a.config == b.config == {"ClockAlignedDataInterval": "600"}

            r = await asyncio.to_thread(_configure, gw, "--station", "CP-OFF", "--station", "CP-900", "--json",
                                        "ClockAlignedDataInterval=60")
            assert r.returncode == 0, r
            assert json.loads(r.stdout) == {"key": "ClockAlignedDataInterval", "value": "60", "stations": {
                "CP-OFF": {"status": "Accepted"}, "CP-900": {"status": "Accepted"}}}, r.stdout
            assert a.config == b.config == {"ClockAlignedDataInterval": "60"}

            # a station's own key is never sent to all; bad input is refused before anything is sent
            for body, why in (({"key": "AuthorizationKey", "value": "ab" * 16},
                               "AuthorizationKey is one station's own: send it to that station with POST "
                               "/api/stations/<id>/change-configuration"),
                              ({"value": 5}, "key must be a configuration key name of 1..50 characters"),
                              ({"key": "X", "value": [1]},
                               "value must be a string or a number of at most 500 characters"),
                              # configuration keys are CiString: any case is the station's own key
                              ({"key": "authorizationkey", "value": "ab" * 16},
                               "authorizationkey is one station's own: send it to that station with POST "
                               "/api/stations/<id>/change-configuration"),
                              # a newline would forge a line in the gateway's log
                              ({"key": "X\nstation=CP-1 forged", "value": "1"},
                               "key and value must be printable text (no control characters)")):
                s, out = await http(port, "POST", "/api/stations/-/configuration", body)
                assert (s, out) == (400, {"error": why}), (body, s, out)
            s, out = await http(port, "POST", "/api/stations/-/configuration", raw=b'{"key": "X", "value": 1e999}')
            assert (s, out) == (400, {"error": "value must be a finite number, not inf"}), (s, out)
            r = await asyncio.to_thread(_configure, gw, "--all", "ClockAlignedDataInterval")
            assert r.returncode == 2 and "write KEY=VALUE" in r.stderr, r
            r = await asyncio.to_thread(_configure, gw, "Foo=1")
            assert r.returncode == 2 and "give --all or --station ID" in r.stderr, r
            assert len(a.received) == 3, a.received    # the three that were sent, nothing else
    finally:
        gw.stop()


def test_configure__cli_says_when_the_gateway_is_not_there(tmp_path):
    env = dict(os.environ, PICOCHARGE_GATEWAY_URL="http://127.0.0.1:9")
    r = subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway", "configure", "--all", "A=1"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "cannot reach the gateway at http://127.0.0.1:9" in r.stderr, r
