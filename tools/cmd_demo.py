"""`picocharge demo`: a gateway, a few simulated stations, the dashboard, live readings.

Runs on embedded defaults with nothing else installed: SQLite in a temporary folder,
the real firmware under the unix port as stations (each registered with the gateway and
authenticated with its own password), no broker, no ThingSpeak. Ctrl-C stops everything.
"""
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from . import unixport
from .firmware import fields
from .fleet import SimFleet
from .paths import board_dir
from .procs import child_options, remove_stale_temp, stop_on_signals, stop_process

# one scenario per station, round-robin, so the dashboard has something to show
DEMO_SCENARIOS = ["charging", "overheat", "flaky"]
ALIGNED_S = 10  # ClockAlignedDataInterval the demo asks for
DEMO_TAG = "DEMO-TAG"
DEMO_TEMP_PREFIX = "picocharge-demo-"   # + the demo's pid: remove_stale_temp knows when it is gone


class GatewayProcess:
    """`picocharge gateway` as a child process; waits for its 'listening' line."""

    def __init__(self, db, host="127.0.0.1", port=0, extra=()):
        self.argv = [sys.executable, "-m", "picocharge.cli", "gateway", "--host", host,
                     "--port", str(port), "--db", str(db), "--auth", "password", *extra]
        # its admin API token: --api-token in `extra`, else PICOCHARGE_GATEWAY_API_TOKEN, else a new one,
        # given to the child in its environment (not on its command line, where ps shows it)
        extra = list(extra)
        self.token = (extra[extra.index("--api-token") + 1] if "--api-token" in extra
                      else os.environ.get("PICOCHARGE_GATEWAY_API_TOKEN") or secrets.token_urlsafe(24))
        self.env = dict(os.environ, PICOCHARGE_GATEWAY_API_TOKEN=self.token)
        self.proc = None
        self.url = None
        self.log = []

    def start(self, timeout=30):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=self.env, **child_options())
        found = queue.Queue()

        def pump():
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log.append(line)
                if line.startswith("gateway listening on http") and self.url is None:
                    found.put(line.split("gateway listening on ", 1)[1].strip())
            found.put(None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            url = found.get(timeout=timeout)
        except queue.Empty:
            url = None
        if not url:
            self.stop()
            raise click.ClickException("the gateway did not start:\n" + "\n".join(self.log[-20:]))
        self.url = url.rstrip("/")
        return self

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def stop(self):
        stop_process(self.proc, grace=10)


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


# the readings the demo's table shows: (row of the reading table, column head, decimals); the
# head gets the row's unit
_SHOWN = ((fields.TEMP, "temp", 1), (fields.HUMIDITY, "RH", 0), (fields.CURRENT, "", 2),
          (fields.POWER, "", 0), (fields.ENERGY, "", 1), (fields.CHIP_TEMP, "board", 1))


def station_table(stations):
    cols = [(fields.READINGS[i], head, digits) for i, head, digits in _SHOWN]
    heads = [("%s %s" % (head, r[fields.UNIT])).strip() for r, head, _d in cols]
    fmt = "%-9s %-10s %-13s" + "".join(" %%%ds" % max(7, len(h)) for h in heads)
    rows = [fmt % tuple(["station", "link", "status"] + heads)]
    for s in stations:
        r = s.get("last_reading") or s.get("readings") or {}
        rows.append(fmt % tuple([s.get("id", "?"), "online" if s.get("connected") else "offline",
                                 (s.get("status") or "-")[:13]]
                                + [_fmt(r.get(c[fields.KEY]), ".%df" % d) for c, _h, d in cols]))
    return "\n".join(rows)


@click.command()
@click.option("-n", "--stations", "count", type=click.IntRange(1, 50), default=3, show_default=True,
              help="How many simulated stations.")
@click.option("--port", type=click.IntRange(0, 65535), default=9000, show_default=True,
              help="Gateway port (dashboard and OCPP); 0 picks a free one.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False),
              help="Keep the database and the stations' flash here (default: a temporary folder, removed).")
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--refresh", type=float, default=3.0, show_default=True, help="Seconds between table refreshes.")
def demo(count, port, data_dir, duration, refresh):
    """Start a gateway and N simulated stations, and show live readings.

    The dashboard address is printed first; open it in a browser. Each station runs the
    real firmware under the MicroPython unix port on its own flash folder and speaks OCPP
    1.6J to the gateway with its own password. Ctrl-C, SIGTERM or SIGHUP stops everything
    and leaves no process behind.

    The stations run under the unix-port micropython named by $PICOCHARGE_MICROPYTHON (it
    always wins), else by $MICROPYTHON, else the first `micropython` on PATH; `picocharge
    doctor` shows which.
    """
    try:   # before any folder is made: nothing to clean up when it is missing
        unixport.find_micropython()
    except unixport.NoMicroPython as e:
        raise click.ClickException(str(e))
    keep = data_dir is not None
    remove_stale_temp(DEMO_TEMP_PREFIX)   # left by a demo that was killed with -9
    root = Path(data_dir) if keep else Path(tempfile.mkdtemp(prefix="%s%d-" % (DEMO_TEMP_PREFIX, os.getpid())))
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)   # the gateway database and the station configs (OCPP passwords): owner only
    with stop_on_signals():
        gw = GatewayProcess(root / "gateway.db", port=port)
        fleet = None
        try:
            gw.start()
            ids = ["DEMO-%03d" % (i + 1) for i in range(count)]
            passwords = {}
            for sid in ids:
                pw = secrets.token_urlsafe(12)
                try:
                    gw.api("POST", "/api/stations", {"id": sid, "password": pw})
                except urllib.error.HTTPError as e:
                    if e.code != 409:  # already registered from an earlier run with --data
                        raise click.ClickException("registering %s: HTTP %d %s" % (sid, e.code, e.read()[:200]))
                    pw = None
                passwords[sid] = pw
            try:  # the stations' local start button uses this tag
                gw.api("POST", "/api/id-tags", {"id_tag": DEMO_TAG, "status": "Accepted"})
            except urllib.error.HTTPError as e:
                raise click.ClickException("adding the demo id tag: HTTP %d %s" % (e.code, e.read()[:200]))
            ws = gw.url.replace("http://", "ws://", 1) + "/ocpp"
            fleet = _demo_fleet(root / "stations", ids, ws, passwords)
            fleet.start(stagger_s=0.2)
            click.echo("dashboard: %s/#token=%s" % (gw.url, gw.token))
            click.echo("API token (admin, for this demo): %s" % gw.token)
            click.echo("%d stations running the real firmware; Ctrl-C stops everything" % count)
            end = time.monotonic() + duration if duration else None
            next_table = time.monotonic() + refresh
            aligned = set()
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
                fleet.supervise()
                while True:  # the stations' own warnings and errors are worth seeing
                    try:
                        sid, line = fleet.lines.get_nowait()
                    except queue.Empty:
                        break
                    if line and ("] W:" in line or "] E:" in line):
                        click.echo("%s | %s" % (sid, line))
                if time.monotonic() >= next_table:
                    next_table += refresh
                    try:
                        stations = gw.api("GET", "/api/stations")
                    except OSError as e:
                        click.echo("gateway API: %s" % e)
                        continue
                    if isinstance(stations, dict):
                        stations = stations.get("stations", [])
                    _align(gw, stations, aligned)
                    click.echo("\n" + station_table(stations))
                if gw.proc.poll() is not None:
                    raise click.ClickException("the gateway stopped:\n" + "\n".join(gw.log[-20:]))
        except KeyboardInterrupt:   # Ctrl-C, SIGTERM, SIGHUP
            click.echo("\nstopping...")
        finally:
            if fleet:
                fleet.stop()
            gw.stop()
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
    click.echo("stopped")


def _align(gw, stations, done):
    """Ask each newly connected station, through the gateway's API as an operator would, for
    clock-aligned data every ALIGNED_S: idle stations then report enclosure temperature and
    humidity too (the station keeps the setting on its flash)."""
    for st in stations:
        if st.get("connected") and st["id"] not in done:
            try:
                r = gw.api("POST", "/api/stations/%s/change-configuration" % st["id"],
                           {"key": "ClockAlignedDataInterval", "value": ALIGNED_S})
            except (OSError, ValueError):
                continue    # the station went away before answering: ask again next time
            if r.get("status") in ("Accepted", "RebootRequired"):
                done.add(st["id"])


def _demo_fleet(root, ids, ws, passwords):
    scen_dir = board_dir("unix") / "scenarios"
    fleet = SimFleet(root, len(ids), prefix="DEMO-", central=ws, passwords=passwords,
                     base_config={"sensors": {"interval_s": 2},
                                  "ocpp": {"meter_interval_s": 5, "heartbeat_s": 60,
                                           "id_tag": DEMO_TAG}})
    for i, s in enumerate(fleet.stations):
        sc = json.loads((scen_dir / (DEMO_SCENARIOS[i % len(DEMO_SCENARIOS)] + ".json")).read_text())
        sc.update({"seed": s.scenario["seed"], "unique_id": s.scenario["unique_id"]})
        s.scenario = sc
        if passwords.get(s.id) is None:  # kept from an earlier run: keep its config too
            old = s.flash / "config.json"
            if old.is_file():
                s.config = json.loads(old.read_text())
    return fleet
