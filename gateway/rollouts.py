"""Firmware updates to stations: one station (`update`), and staged rollouts across a fleet.

UpdateFirmware's location is `<scheme>://<host>/fw/<version>/manifest.json` where host is the
`Host` the station's WebSocket named and scheme https when that connection was TLS
(docs/ota.md), so a board fetches its release from the gateway it already reaches.

A rollout takes its stations in waves of `wave`: each station of a wave is sent UpdateFirmware
(once it is connected); the station is done when, after that, it reported Installed and runs
the new version (its BootNotification's firmwareVersion); it failed on DownloadFailed,
InstallationFailed, a refused or unanswered UpdateFirmware, or when `timeout` seconds passed
without both. The next wave starts only when every station of the wave is done. At
`max_failures` failed stations the rollout stops: no further wave, the stations of the current
one are still followed to their end, and the rollout's `reason` names the failed ones.

Everything is in the store (rollouts, rollout_stations, ota_status): a gateway that restarts
resumes each running rollout where it was, deadlines included (wall-clock times).

Several gateway processes (cluster.py): UpdateFirmware and GetDiagnostics reach a station
wherever it is connected. Their location names the gateway as the station reaches it, which
only the process holding the station knows, so a process sends the other one the call's fields
(cluster "ota:<Action>") and that one builds the call and sends it (`send_here`), answering with
{location, answer}. A rollout made on one process follows its stations on the others by reading
the shared store every OTHERS_POLL_S seconds (their status reports wake only their own process).
"""
import asyncio
import calendar
import logging
import time

from ocpp.v16 import call as ocpp_call

from . import releases, store as st
from .commands import CommandError, send_call
from .store import now_iso

log = logging.getLogger(__name__)

FAILED_STATUSES = ("DownloadFailed", "InstallationFailed")
DEFAULT_TIMEOUT = 1800      # seconds for one station: download, install, reboot, Installed
TIMEOUT_RANGE = (5, 7 * 86400)
MAX_STATIONS = 10000
OTHERS_POLL_S = 2.0     # a rollout looks at the store this often when other processes hold stations
# the fields one process sends another for an OTA call it builds there (send_here)
OTA_FIELDS = {"UpdateFirmware": ("version", "retrieve_date", "retries", "retry_interval"),
              "GetDiagnostics": ("start_time", "stop_time", "retries", "retry_interval")}
STATES = ("running", "stopped", "done", "cancelled")


def _epoch(iso):
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def location(gw, sid, path):
    """`<scheme>://<host><path>` as the station reaches the gateway (its WebSocket's Host and
    TLS); CommandError when the station has not connected since the gateway started."""
    origin = gw.origins.get(sid)
    if origin is None:
        raise CommandError(409, "station %s is not connected" % sid)
    return "%s://%s%s" % (origin[0], origin[1], path)


async def send_update(gw, sid, version, retrieve_date=None, retries=None, retry_interval=None):
    """UpdateFirmware for stored release `version` to station `sid`, wherever it is connected:
    (location, retrieveDate, the station's answer). CommandError as the API's commands."""
    when = retrieve_date or now_iso()
    kw = {k: v for k, v in (("version", version), ("retrieve_date", when), ("retries", retries),
                            ("retry_interval", retry_interval)) if v is not None}
    out = await send_ota(gw, sid, "UpdateFirmware", kw)
    log.info("station=%s UpdateFirmware %s sent (retrieveDate %s)", sid, version, when)
    return out["location"], when, out["answer"]


async def send_ota(gw, sid, action, kw):
    """UpdateFirmware or GetDiagnostics (`kw`: OTA_FIELDS[action]) to station `sid` wherever it is
    connected: {"location", "answer"}; CommandError as the API's commands (409 when it is
    connected nowhere)."""
    if gw.elsewhere(sid):
        return await gw.cluster.forward(sid, "ota:" + action, kw, gw.settings.response_timeout)
    return await send_here(gw, sid, action, kw)


async def send_here(gw, sid, action, kw):
    """send_ota to a station connected to this process: the call built with its location."""
    if sid not in gw.sessions:
        raise CommandError(409, "station %s is not connected" % sid)
    allowed = OTA_FIELDS.get(action)
    if allowed is None:
        raise CommandError(400, "%s is not an update or diagnostics call (%s)" % (action[:40], ", ".join(OTA_FIELDS)))
    if not isinstance(kw, dict) or set(kw) - set(allowed):
        raise CommandError(400, "bad %s fields %s: the fields are %s" % (action, sorted(kw)[:8] if isinstance(
            kw, dict) else type(kw).__name__, ", ".join(allowed)))
    kw = dict(kw)
    if action == "UpdateFirmware":
        version = kw.pop("version", None)
        if releases.version_problem(version):
            raise CommandError(400, "bad UpdateFirmware version: %s" % releases.version_problem(version))
        url = location(gw, sid, "/fw/%s/%s" % (version, releases.MANIFEST))
        payload = ocpp_call.UpdateFirmware(location=url, **kw)
    else:
        url = location(gw, sid, "/diag/%s/" % sid)
        payload = ocpp_call.GetDiagnostics(location=url, **kw)
    # send_call checks the payload against the schema (a field of the wrong type: 400)
    return {"location": url, "answer": await send_call(gw.sessions, sid, payload)}


class Rollouts:
    """The gateway's rollouts: created, resumed after a restart, followed, cancelled."""

    def __init__(self, gw, clock=time.time):
        self.gw = gw
        self.clock = clock
        self._tasks = {}    # rollout id -> its task
        self._wake = {}     # rollout id -> asyncio.Event set when one of its stations reports
        self._stations = {}     # rollout id -> its stations, while it runs (for the overlap check)
        self._watch = {}        # rollout id -> the stations whose news it waits for (its wave: updating)
        self._creating = None   # asyncio.Lock, made in the loop that uses it

    async def resume(self):
        for ro in await self.gw.store.run(st.rollout_rows, None, "running"):
            log.info("rollout %d of %s resumed", ro["id"], ro["version"])
            self._start(ro["id"])
        for ro in await self.gw.store.run(st.rollout_rows, None, "stopped"):
            if any(s["state"] == "updating" for s in ro["stations"]):
                self._start(ro["id"])

    def stop(self):
        for t in self._tasks.values():
            t.cancel()
        self._tasks.clear()

    async def send_here(self, sid, action, kw):
        """What another gateway process asked this one to send (cluster.py, "ota:<Action>")."""
        return await send_here(self.gw, sid, action, kw)

    def wake(self, sid=None):
        """A station reported something (a status, a boot): the rollouts whose wave holds it look
        again (sid None: every rollout). Another station's news changes nothing in a rollout's
        step (a station of a later wave is looked at when its wave starts, with a read of its own),
        and waking every rollout for every boot made each boot of a fleet cost a step, which reads
        and walks all of a rollout's stations: ~50 ms of CPU at 10,000 (benchmarks/fleet_scale.py)."""
        for rid, ev in self._wake.items():
            watch = self._watch.get(rid)
            if sid is None or watch is None or sid in watch:
                ev.set()

    def _start(self, rid):
        self._wake[rid] = asyncio.Event()
        t = asyncio.get_running_loop().create_task(self._run(rid))
        self._tasks[rid] = t

        def done(task, rid=rid):
            self._tasks.pop(rid, None)
            self._wake.pop(rid, None)
            self._watch.pop(rid, None)
            if not task.cancelled() and task.exception() is not None:
                log.error("rollout %d failed: %r", rid, task.exception())
        t.add_done_callback(done)

    # --- the API's calls ------------------------------------------------------
    async def create(self, version, stations, wave, max_failures, timeout):
        """A new rollout's id; ValueError says what is wrong with the request."""
        if self._creating is None:
            self._creating = asyncio.Lock()
        async with self._creating:      # two requests at once cannot both take a station
            return await self._create(version, stations, wave, max_failures, timeout)

    async def _create(self, version, stations, wave, max_failures, timeout):
        rows = await self.gw.store.run(st.release_rows, version)
        if not rows:
            raise ValueError("no release %s on this gateway: add it first (POST /api/releases, or `picocharge "
                             "gateway release add DIR`)" % version)
        if stations == "all":       # every station the operator accepted (a rejected one would only time out)
            stations = sorted(sid for sid, row in self.gw.stations.items() if row.get("state") == "accepted")
        if not isinstance(stations, list) or not 1 <= len(stations) <= MAX_STATIONS or \
                not all(isinstance(s, str) for s in stations):
            raise ValueError('stations must be a list of 1..%d station ids, or "all"' % MAX_STATIONS)
        unknown = [s for s in stations if s not in self.gw.stations]
        if unknown:
            raise ValueError("unknown stations: %s (GET /api/stations lists them)" % ", ".join(unknown[:10])[:300])
        if len(set(stations)) != len(stations):
            raise ValueError("a station is listed twice in stations")
        for name, v, lo, hi in (("wave", wave, 1, MAX_STATIONS), ("max_failures", max_failures, 1, MAX_STATIONS),
                                ("timeout", timeout, TIMEOUT_RANGE[0], TIMEOUT_RANGE[1])):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError("%s must be an integer %d..%d" % (name, lo, hi))
        busy = [s for ro in self._running_rows() for s in ro]
        clash = sorted(set(busy) & set(stations))
        if clash:
            raise ValueError("stations already in a running rollout: %s (cancel it first)" % ", ".join(clash[:10]))
        rid = await self.gw.store.run(st.add_rollout, version, wave, max_failures, timeout, stations, now_iso())
        self._stations[rid] = list(stations)
        log.info("rollout %d: %s to %d stations, waves of %d, stop at %d failures, %d s per station", rid, version,
                 len(stations), wave, max_failures, timeout)
        self._start(rid)
        return rid

    def _running_rows(self):
        return [self._stations.get(rid, []) for rid in self._tasks]

    async def get(self, rid):
        rows = await self.gw.store.run(st.rollout_rows, rid)
        return _view(rows[0]) if rows else None

    async def list(self):
        return [_view(r) for r in await self.gw.store.run(st.rollout_rows)]

    async def cancel(self, rid):
        """The rollout after cancelling it (no further update is sent); None: no such rollout."""
        rows = await self.gw.store.run(st.rollout_rows, rid)
        if not rows:
            return None
        ro = rows[0]
        if ro["state"] in ("running", "stopped"):
            t = self._tasks.get(rid)
            if t is not None:
                t.cancel()
            now = now_iso()

            def write(db):
                for s in ro["stations"]:
                    if s["state"] in ("waiting", "updating"):
                        detail = "cancelled" if s["state"] == "waiting" else \
                            "cancelled after UpdateFirmware was sent: the station may still install it"
                        st.set_rollout_station(db, rid, s["station"], "cancelled", detail, s["since_seq"],
                                               s["started"], now)
                if ro["state"] == "running":
                    st.set_rollout(db, rid, "cancelled", "cancelled by the operator", now)
            await self.gw.store.run(write)
            log.info("rollout %d cancelled", rid)
        return await self.get(rid)

    # --- following a rollout --------------------------------------------------
    async def _run(self, rid):
        ev = self._wake[rid]
        if rid not in self._stations:       # resumed: its stations, for the overlap check of create()
            self._stations[rid] = await self.gw.store.run(st.rollout_station_ids, rid)
        while True:
            ev.clear()
            # the stations a step judges (its wave, the failed ones), not all of them: a step per
            # status report of the wave read and walked every station of the rollout, ~60 ms of CPU
            # at 10,000 (benchmarks/fleet_scale.py), O(N^2) over a rollout of the fleet
            rows = await self.gw.store.run(st.rollout_judged, rid)
            if not rows:
                return
            ro = rows[0]
            # before the step: news that comes while it runs wakes the next one. A step that starts
            # a wave returns 0 (the next reads at once, and watches the new wave from then on)
            self._watch[rid] = {s["station"] for s in ro["stations"] if s["state"] == "updating"}
            wait = await self._step(ro)
            if wait is None:
                self._stations.pop(rid, None)
                self._watch.pop(rid, None)
                return
            try:
                await asyncio.wait_for(ev.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def _step(self, ro):
        """One look at a rollout: stations judged, updates sent, the next wave started. Seconds
        until the next deadline (None: nothing more to follow). `ro` as store.rollout_judged gives
        it: the stations updating and failed; the waiting ones are read when a wave starts or the
        rollout stops."""
        gw, rid, version = self.gw, ro["id"], ro["version"]
        now = self.clock()
        updating = [s for s in ro["stations"] if s["state"] == "updating"]
        sent = [s for s in updating if s["since_seq"] is not None]
        seen = await gw.store.run(_statuses_since, [(s["station"], s["since_seq"]) for s in sent])
        changes, to_send = [], []
        for s in updating:
            sid = s["station"]
            late = now >= _epoch(s["started"]) + ro["timeout"]
            if s["since_seq"] is None:      # not sent yet: the station was not connected
                if (sid in gw.sessions and gw.origins.get(sid)) or gw.elsewhere(sid):
                    to_send.append(s)
                elif late:
                    changes.append((s, "failed", "timeout: not connected within %d s" % ro["timeout"], None))
                continue
            statuses = seen.get(sid, [])
            bad = [x for x in statuses if x in FAILED_STATUSES]
            running = (gw.stations.get(sid) or {}).get("firmware")
            if bad:
                changes.append((s, "failed", bad[0], None))
            elif "Installed" in statuses and running == version:
                changes.append((s, "done", "Installed, running %s" % version, None))
            elif late:
                changes.append((s, "failed", "timeout: no Installed and reboot on %s within %d s (last status %s, "
                                "running %s)" % (version, ro["timeout"], statuses[-1] if statuses else "none",
                                                 running or "unknown"), None))
            elif statuses and statuses[-1] != s["detail"]:
                changes.append((s, "updating", statuses[-1], s["since_seq"]))
        if to_send:
            changes += [c for c in await asyncio.gather(*(self._send(s, version) for s in to_send)) if c]
        if changes:
            await gw.store.run(_write_changes, rid, changes, now_iso())
            for s, state, detail, _seq in changes:
                s["state"], s["detail"] = state, detail
                if state in ("done", "failed"):
                    log.info("station=%s rollout %d: %s (%s)", s["station"], rid, state, detail)
        failed = [s for s in ro["stations"] if s["state"] == "failed"]
        state = ro["state"]
        if state == "running" and len(failed) >= ro["max_failures"]:
            reason = "stopped at %d failed station(s): %s" % (len(failed), "; ".join(
                "%s %s" % (s["station"], s["detail"]) for s in failed)[:900])
            skipped = await gw.store.run(st.rollout_waiting, rid)
            await gw.store.run(_stop, rid, reason, skipped, now_iso())
            for s in skipped:
                s["state"] = "skipped"
            state = "stopped"
            log.warning("rollout %d of %s %s", rid, version, reason)
        active = [s for s in ro["stations"] if s["state"] == "updating"]
        if state == "running" and not active:
            nxt = await gw.store.run(st.rollout_waiting, rid, ro["wave"])
            if not nxt:
                await gw.store.run(st.set_rollout, rid, "done", "every station runs %s" % version, now_iso())
                log.info("rollout %d of %s done", rid, version)
                return None
            start = now_iso()
            first = []
            for s in nxt:
                if (gw.stations.get(s["station"]) or {}).get("firmware") == version:
                    first.append((s, "done", "already running %s" % version, None))
                else:
                    s["started"] = start
                    first.append((s, "updating", "waiting for the station to connect", None))
            await gw.store.run(_write_changes, rid, first, start, start)
            return 0        # look again at once: send to the connected ones
        if not active:
            return None
        deadline = min(_epoch(s["started"]) + ro["timeout"] for s in active)
        # stations on other processes report there: their news is read from the store
        return max(0.05, min(deadline - self.clock(), 60.0 if gw.cluster is None else OTHERS_POLL_S))

    async def _send(self, s, version):
        sid = s["station"]
        seq = await self.gw.store.run(st.ota_seq)
        try:
            await send_update(self.gw, sid, version)
        except CommandError as e:
            if e.status == 409:     # gone since it was seen: sent when it is back (within the timeout)
                return None
            return (s, "failed", "UpdateFirmware not delivered: %s" % e.message, None)
        return (s, "updating", "UpdateFirmware sent", seq)


def _statuses_since(db, pairs):
    out = {}
    for sid, seq in pairs:
        out[sid] = [r[0] for r in db.execute("SELECT status FROM ota_status WHERE station=? AND kind=? AND seq > ? "
                                             "ORDER BY seq", (sid, "firmware", seq))]
    return out


def _write_changes(db, rid, changes, finished, started=None):
    for s, state, detail, seq in changes:
        if started is not None and state == "updating":
            s["started"] = started
        if seq is not None:
            s["since_seq"] = seq
        st.set_rollout_station(db, rid, s["station"], state, detail, s["since_seq"], s["started"] or started,
                               finished if state in ("done", "failed") else None)


def _stop(db, rid, reason, skipped, now):
    st.set_rollout(db, rid, "stopped", reason, now)
    for s in skipped:
        st.set_rollout_station(db, rid, s["station"], "skipped", "not started: the rollout stopped", None, None,
                               None)


def _view(ro):
    counts = {}
    for s in ro["stations"]:
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    out = {k: ro[k] for k in ("id", "version", "wave", "max_failures", "timeout", "state", "reason", "created",
                              "finished")}
    out["counts"] = counts
    out["stations"] = [{k: s[k] for k in ("station", "state", "detail", "started", "finished")}
                       for s in ro["stations"]]
    return out
