"""`picocharge sim`: N simulated stations (the real firmware under the unix port), each run by
fwproc.FirmwareProcess (through fleet.SimStation), the helper the tests run stations with."""
import json
import queue
import shutil
import tempfile
import time
from pathlib import Path

import click

from . import inventory, unixport
from .cmd_provision import read_ca, read_client
from .cmd_run import scenario_path
from .fleet import SimFleet, station_ids
from .fwproc import RESET_EXIT
from .options import set_option
from .procs import stop_on_signals


@click.command()
@click.option("-n", "--stations", "count", type=click.IntRange(1, 500), default=3, show_default=True,
              help="How many stations.")
@click.option("--central", envvar="PICOCHARGE_CENTRAL_URL", metavar="URL",
              help="OCPP central system, e.g. ws://127.0.0.1:9000/ocpp (the station id is appended). "
                   "[env: PICOCHARGE_CENTRAL_URL]")
@click.option("--password", envvar="PICOCHARGE_OCPP_PASSWORD", metavar="SECRET",
              help="OCPP Basic-auth password for every station (never printed). "
                   "[env: PICOCHARGE_OCPP_PASSWORD]")
@click.option("--id-tag", metavar="TAG",
              help="Id tag the stations' start button presents (ocpp.id_tag): without one a button "
                   "press starts no transaction; the central system must accept the tag.")
@click.option("--mqtt", "mqtt_url", metavar="URL",
              help="Also publish telemetry to this broker: mqtt://[user:password@]host[:port] "
                   "(mqtts:// for TLS, port 8883 unless given).")
@click.option("--ca-cert", "ca_cert", type=click.Path(dir_okay=False), metavar="FILE",
              help="CA certificate (PEM or DER) that signed the central system's (wss://) and the broker's "
                   "(mqtts://) certificates: each station verifies them with it, as `picocharge provision "
                   "--ca-cert` sets up a board.")
@click.option("--client-cert-dir", "client_dir", type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="OCPP security profile 3: each station presents DIR/<station id>.crt and .key (made by "
                   "`picocharge gateway ca issue`, e.g. SIM-001) over wss:// instead of a password.")
@click.option("--scenario", help="Scenario file, or a shipped one: charging, overheat, flaky, ev (a car "
                                 "behind the control pilot: charger.pilot is turned on).")
@click.option("--prefix", default="SIM-", show_default=True, help="Station id prefix.")
@click.option("--flash-root", type=click.Path(file_okay=False),
              help="Folder for the stations' flash folders (default: a temporary folder, removed at "
                   "the end).")
@click.option("--interval", type=click.IntRange(1, 3600), default=2, show_default=True,
              help="Seconds between samples.")
@click.option("--meter-interval", type=click.IntRange(1, 86400), default=10, show_default=True,
              help="OCPP MeterValueSampleInterval in seconds.")
@set_option
@click.option("--heap", default=unixport.DEFAULT_HEAP, show_default=True,
              help="MicroPython heap size per station (the firmware fits 192K on 64-bit, ~ the Pico W's ~100K on 32-bit; 224K leaves room for the qstr pool a station needs once it has seen most kinds of call).")
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--quiet", is_flag=True, help="Only print warnings and errors from the stations.")
def sim(count, central, password, id_tag, mqtt_url, ca_cert, client_dir, scenario, prefix, flash_root, interval,
        meter_interval, sets, heap, duration, quiet):
    """Run N simulated stations: the real firmware under the MicroPython unix port, each on
    its own flash folder, against a central system and/or an MQTT broker.

    Each line of output is prefixed with the station id. Stations whose firmware resets
    are restarted on the same flash folder, as a board reboots. Ctrl-C, SIGTERM or SIGHUP
    stops them all. --set applies any config key to every station, after the options above.

    The firmware runs under the unix-port micropython named by $PICOCHARGE_MICROPYTHON (it
    always wins), else by $MICROPYTHON, else the first `micropython` on PATH; `picocharge
    doctor` shows which.

    \b
    A charging session against a central system that accepts the tag TAG-1:
      picocharge sim -n 2 --central ws://127.0.0.1:9000/ocpp --id-tag TAG-1 --scenario charging
    """
    base = {"sensors": {"interval_s": interval}}
    if central:
        if not central.startswith(("ws://", "wss://")):
            raise click.BadParameter("must start with ws:// or wss://", param_hint="--central")
        base["ocpp"] = {"meter_interval_s": meter_interval, "heartbeat_s": 60}
    if id_tag is not None:
        try:
            inventory.set_dotted(base, "ocpp.id_tag", inventory.coerce("ocpp.id_tag", id_tag))
        except inventory.InventoryError as e:
            raise click.BadParameter(str(e), param_hint="--id-tag")
    if mqtt_url:
        from urllib.parse import unquote, urlsplit

        u = urlsplit(mqtt_url if "://" in mqtt_url else "mqtt://" + mqtt_url)
        try:
            port = u.port
        except ValueError:
            port = -1
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname or port == -1:
            raise click.BadParameter("expected mqtt://[user:password@]host[:port], or mqtts:// for TLS",
                                     param_hint="--mqtt")
        tls = u.scheme == "mqtts"
        base["mqtt"] = {"enabled": True, "host": u.hostname, "port": port or (8883 if tls else 1883),
                        "interval_s": interval}
        if tls:
            base["mqtt"]["ssl"] = True
        if u.username:
            base["mqtt"]["user"] = unquote(u.username)
        if u.password:
            base["mqtt"]["password"] = unquote(u.password)
    files = {}
    if ca_cert:
        name, der, _subject = read_ca(ca_cert)      # checked (one X.509 certificate) before any station starts
        files[name] = der
        for uplink in ("ocpp", "mqtt"):
            if uplink in base:
                base[uplink]["ca_cert"] = name
    if client_dir and not (central or "").startswith("wss://"):
        raise click.BadParameter("client certificates are presented over TLS: give --central wss://...",
                                 param_hint="--client-cert-dir")
    ids = station_ids(prefix, count)
    own = {}
    for sid in ids if client_dir else ():
        crt, key = Path(client_dir) / (sid + ".crt"), Path(client_dir) / (sid + ".key")
        if not crt.is_file() or not key.is_file():
            raise click.BadParameter("%s or %s is missing: issue one per station with `picocharge gateway ca "
                                     "issue %s --out %s`" % (crt, key, sid, client_dir), param_hint="--client-cert-dir")
        d = read_client(crt, key, sid, where="--client-cert-dir")
        own[sid] = ({d["cert_name"]: d["cert_der"], d["key_name"]: d["key_der"]},
                    {"ocpp.client_cert": d["cert_name"], "ocpp.client_key": d["key_name"]})
    sc = scenario_path(scenario)
    sc_data = json.loads(Path(sc).read_text()) if sc else {}
    if "ev" in sc_data:   # a car behind the control pilot: the station reads the pilot (--set wins)
        base.setdefault("charger", {})["pilot"] = True
    for k, v in sets:
        inventory.set_dotted(base, k, v)
    try:
        unixport.find_micropython()
    except unixport.NoMicroPython as e:
        raise click.ClickException(str(e))
    temp = None if flash_root else tempfile.mkdtemp(prefix="picocharge-sim-")
    root = Path(flash_root or temp)
    try:
        try:
            fleet = SimFleet(root, count, prefix=prefix, central=central,
                             passwords={sid: password for sid in ids} if password else None,
                             base_config=base, scenario=sc_data, heap=heap,
                             files={sid: dict(files, **own.get(sid, ({}, {}))[0]) for sid in ids},
                             config_of={sid: own[sid][1] for sid in own})
        except ValueError as e:
            raise click.ClickException(str(e))
        _run(fleet, "%s%s" % (root, " (removed at the end)" if temp else ""), duration, quiet, central)
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


# what the firmware's OCPP task logs once its WebSocket is up, and when a link attempt fails
_CONNECTED = "[ocpp] I: connected"
_LINK_DOWN = "[ocpp] W: link down"


def _run(fleet, where, duration, quiet, central=None):
    connected, last_error = set(), {}
    with stop_on_signals():
        try:
            try:
                fleet.start()
            except unixport.NoMicroPython as e:
                raise click.ClickException(str(e))
            click.echo("%d stations running, flash folders under %s; Ctrl-C stops"
                       % (len(fleet.stations), where), err=True)
            end = time.monotonic() + duration if duration else None
            while end is None or time.monotonic() < end:
                try:
                    sid, line = fleet.lines.get(timeout=0.5)
                except queue.Empty:
                    line = sid = None
                if line is not None:
                    if line.startswith(_CONNECTED):
                        connected.add(sid)
                    elif line.startswith(_LINK_DOWN):
                        last_error[sid] = line[len("[ocpp] W: "):]
                    if not quiet or "] W:" in line or "] E:" in line:
                        click.echo("%s | %s" % (sid, line))
                fleet.supervise()
                if not fleet.alive() and fleet.lines.empty():
                    break
        except KeyboardInterrupt:   # Ctrl-C, SIGTERM, SIGHUP
            pass
        finally:
            fleet.stop()
    bad = [s for s in fleet.stations if s.proc and s.proc.returncode not in (0, -15, -2, RESET_EXIT, None)]
    if bad:
        raise click.ClickException("station(s) stopped with an error: %s" % ", ".join(
            "%s (exit %s)" % (s.id, s.proc.returncode) for s in bad))
    never = [s.id for s in fleet.stations if s.id not in connected]
    if central and never:
        why = "; ".join("%s: %s" % (sid, last_error[sid]) for sid in never[:3] if sid in last_error)
        raise click.ClickException(
            "%d of %d station(s) never connected to %s%s. Is the central system running there "
            "(`picocharge doctor --gateway http://HOST:PORT`), and does it know these stations "
            "(--password, or a gateway started with --auth none)?"
            % (len(never), len(fleet.stations), central, " (%s)" % why if why else ""))
