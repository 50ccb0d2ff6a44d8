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
from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import unixport
from .firmware import fields
from .fleet import SimFleet
from .gateway.readings import unit_symbol
from .paths import board_dir
from .procs import child_options, remove_stale_temp, stop_on_signals, stop_process

# one scenario per station, round-robin, so the dashboard has something to show: "ev" is a car
# behind the control pilot (charger.pilot on for it): plugged in, charging at what the pilot
# offers, pausing, unplugged
DEMO_SCENARIOS = ["ev", "overheat", "flaky"]
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
COLUMNS = ("station", "link", "status") + tuple(
    head + unit_symbol(fields.READINGS[i][fields.UNIT]) for i, head, _d in _SHOWN)
_ROW = "%-9s %-10s %-13s" + "".join(" %%%ds" % max(7, len(h)) for h in COLUMNS[3:])


def station_cells(s):
    """The table's cells for one station of GET /api/stations."""
    r = s.get("last_reading") or s.get("readings") or {}
    return (s.get("id", "?"), "online" if s.get("connected") else "offline", (s.get("status") or "-")[:13]) + tuple(
        _fmt(r.get(fields.READINGS[i][fields.KEY]), ".%df" % d) for i, _h, d in _SHOWN)


def station_table(stations):
    return "\n".join([_ROW % COLUMNS] + [_ROW % station_cells(s) for s in stations])


class Changes:
    """Faults and recoveries, from one GET /api/stations to the next: a line for each station
    that went offline or came back, faulted (Faulted, or an error code) or recovered from it."""

    def __init__(self):
        self._seen = {}     # id -> (connected, status, error code)
        self._online = set()    # ids seen connected: "back online" from then on

    def lines(self, stations):
        out = []
        for s in stations:
            sid = s.get("id", "?")
            now = (bool(s.get("connected")), s.get("status"), s.get("error_code") or "NoError")
            was = self._seen.get(sid)
            self._seen[sid] = now
            if was is None:
                if now[0]:
                    self._online.add(sid)
                continue
            if was[0] != now[0]:
                out.append("%s %s" % (sid, "offline" if not now[0] else
                                      "back online" if sid in self._online else "online"))
            if now[0]:
                self._online.add(sid)
            fault_was = was[1] == "Faulted" or was[2] != "NoError"
            fault_now = now[1] == "Faulted" or now[2] != "NoError"
            what_was = "%s/%s" % (was[1] or "-", was[2])
            if fault_now and (not fault_was or (now[1], now[2]) != (was[1], was[2])):
                out.append("%s FAULT: %s/%s" % (sid, now[1] or "-", now[2]))
            elif fault_was and not fault_now:
                out.append("%s recovered: %s cleared, now %s" % (sid, what_was, now[1] or "-"))
        return out


class PlainView:
    """Not a terminal (a log file, CI): the header once, then one line per station whose row
    changed, and the faults and recoveries as they come."""

    def __init__(self):
        self._rows = {}
        self._header = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def log(self, line):
        click.echo(line)

    def show(self, stations):
        for s in stations:
            row = _ROW % station_cells(s)
            if self._rows.get(s.get("id")) != row:
                if not self._header:
                    click.echo(_ROW % COLUMNS)
                    self._header = True
                self._rows[s.get("id")] = row
                click.echo(row)


class LiveView:
    """A terminal: the table redrawn in place (rich's Live), the log lines printed above it; the
    table is drawn again only when it changed."""

    def __init__(self, console=None):
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, redirect_stdout=False,
                         redirect_stderr=False)
        self._last = None

    def __enter__(self):
        self.live.start()
        return self

    def __exit__(self, *exc):
        self.live.stop()
        return False

    def log(self, line):
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def show(self, stations):
        rows = [station_cells(s) for s in stations]
        if rows == self._last:
            return
        self._last = rows
        t = Table(*COLUMNS, box=None, pad_edge=False)
        for c in t.columns[3:]:
            c.justify = "right"
        for cells in rows:
            style = "red" if cells[2] == "Faulted" else ("dim" if cells[1] == "offline" else None)
            t.add_row(*cells, style=style)
        self.live.update(t, refresh=True)


def view_for(stream):
    """LiveView on a terminal, PlainView otherwise (logs and CI stay readable)."""
    return LiveView() if stream.isatty() else PlainView()


@click.command()
@click.option("-n", "--stations", "count", type=click.IntRange(1, 50), default=3, show_default=True,
              help="How many simulated stations.")
@click.option("--port", type=click.IntRange(0, 65535), default=9000, show_default=True,
              help="Gateway port (dashboard and OCPP); 0 picks a free one.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False),
              help="Keep the database and the stations' flash here (default: a temporary folder, removed).")
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--refresh", type=click.FloatRange(0.2), default=1.0, show_default=True,
              help="Seconds between looks at the gateway: on a terminal the table is redrawn in place when "
                   "it changed; otherwise one line per station whose row changed.")
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
        # the demo asks each station for ClockAlignedDataInterval ALIGNED_S itself (_align): the
        # gateway's own boot-time setting would race it
        gw = GatewayProcess(root / "gateway.db", port=port, extra=("--clock-aligned-interval", "keep"))
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
            next_table = time.monotonic()
            aligned = set()
            changes = Changes()
            with view_for(sys.stdout) as view:
                while end is None or time.monotonic() < end:
                    time.sleep(0.2)
                    fleet.supervise()
                    while True:  # the stations' own warnings and errors are worth seeing
                        try:
                            sid, line = fleet.lines.get_nowait()
                        except queue.Empty:
                            break
                        if line and ("] W:" in line or "] E:" in line):
                            view.log("%s | %s" % (sid, line))
                    if time.monotonic() >= next_table:
                        next_table = time.monotonic() + refresh
                        try:
                            stations = gw.api("GET", "/api/stations")
                        except OSError as e:
                            view.log("gateway API: %s" % e)
                            continue
                        if isinstance(stations, dict):
                            stations = stations.get("stations", [])
                        _align(gw, stations, aligned)
                        for line in changes.lines(stations):
                            view.log(line)
                        view.show(stations)
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
        if "ev" in sc:
            s.config.setdefault("charger", {})["pilot"] = True
    return fleet
