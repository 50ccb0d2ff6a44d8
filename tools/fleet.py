"""A fleet of simulated stations: the real firmware under the unix port, one flash folder each.

Used by `picocharge sim`, `picocharge demo` and the benchmark's --firmware mode.
"""
import json
import queue
import time
from pathlib import Path

from . import inventory, unixport
from .firmware import config as fwconfig
from .fwproc import RESET_EXIT, FirmwareProcess, write_private  # noqa: F401  (re-exported)
from .procs import child_options


def station_ids(prefix, count):
    """The ids of a fleet of `count` stations: prefix + a number of at least 3 digits (SIM-001...)."""
    width = max(3, len(str(count)))
    return ["%s%0*d" % (prefix, width, i + 1) for i in range(count)]


class SimStation:
    def __init__(self, fleet, index, station_id, flash, config, scenario):
        self.fleet = fleet
        self.index = index
        self.id = station_id
        self.flash = Path(flash)
        self.config = config
        self.scenario = scenario
        self.fw = None
        self.files = {}
        self.restarts = 0
        self.exit_code = None

    @property
    def proc(self):
        return self.fw.proc if self.fw else None

    def write_files(self):
        # the same process helper the tests run stations with; no console history kept (a
        # simulation runs for hours): each line goes to the fleet's queue
        self.fw = FirmwareProcess(self.flash, self.config, self.scenario, heap=self.fleet.heap,
                                  on_line=self._line, record=False, indent=1)
        for name, data in self.files.items():      # certificates and keys, as provision copies them
            write_private(self.flash / name, data)

    def start(self):
        # own session: a terminal's Ctrl-C reaches the supervisor, which stops the stations
        self.fw.start(**child_options())
        self.exit_code = None

    def _line(self, line):
        self.fleet.lines.put((self.id, line))
        if line is None:
            self.exit_code = self.fw.proc.returncode

    def stop(self, timeout=5):
        if self.fw:
            self.fw.stop(timeout)


class SimFleet:
    def __init__(self, root, count, prefix="SIM-", central=None, passwords=None, base_config=None,
                 scenario=None, heap=unixport.DEFAULT_HEAP, web_ports=None, seed=1, files=None, config_of=None):
        """`central`: OCPP central-system URL (the station id is appended by the firmware).
        `passwords`: {station_id: password} for OCPP Basic auth. `base_config`: config keys
        shared by every station (merged under each station's own). `scenario`: dict for the
        unix board (each station gets its own seed). `web_ports`: list of status-page ports.
        `files`: {station_id: {name: bytes}} written to its flash folder (0600): CA and client
        certificates. `config_of`: {station_id: {dotted key: value}} set on that station alone.
        """
        self.root = Path(root)
        self.heap = heap
        self.lines = queue.Queue()
        self.stations = []
        for i, sid in enumerate(station_ids(prefix, count)):
            cfg = json.loads(json.dumps(base_config or {}))
            cfg["station_id"] = sid
            cfg.setdefault("sensors", {}).setdefault("interval_s", 2)
            if central:
                o = cfg.setdefault("ocpp", {})
                o["url"] = central
                if passwords and sid in passwords:
                    o["password"] = passwords[sid]
            for k, v in ((config_of or {}).get(sid) or {}).items():
                inventory.set_dotted(cfg, k, v)
            w = cfg.setdefault("web", {})
            if web_ports:
                w.update({"enabled": True, "port": web_ports[i]})
            else:
                w.setdefault("enabled", False)
            fwconfig.validate(cfg)  # refuse a bad config before any board sees it
            sc = json.loads(json.dumps(scenario or {}))
            sc["seed"] = seed + i
            sc.setdefault("unique_id", "e66141%010x" % (i + 1))
            st = SimStation(self, i, sid, self.root / sid, cfg, sc)
            st.files = dict((files or {}).get(sid) or {})
            self.stations.append(st)

    def start(self, stagger_s=0.05):
        for s in self.stations:
            s.write_files()
        for s in self.stations:
            s.start()
            if stagger_s:
                time.sleep(stagger_s)
        return self

    def supervise(self):
        """Restart stations whose firmware asked for a reset (exit 75), as a board reboots."""
        for s in self.stations:
            if s.proc and s.proc.poll() == RESET_EXIT:
                s.restarts += 1
                s.start()

    def alive(self):
        return [s for s in self.stations if s.proc and s.proc.poll() is None]

    def stop(self):
        for s in self.stations:
            if s.proc and s.proc.poll() is None:
                s.proc.terminate()
        for s in self.stations:
            s.stop()
