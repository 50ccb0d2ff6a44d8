"""Live updates for the dashboard: Server-Sent Events (GET /api/events), and the fleet view the
overview pages through (GET /api/fleet: search, filters, summary counts).

The hub looks at the gateway's in-memory view of its stations (gw.stations, gw.sessions,
gw.last) once per TICK_S while someone listens, and sends each subscriber one `update` event
per tick with the stations that changed (of those it asked for) and the summary counts when
they changed. So the gateway's handlers are not touched and a tick costs one pass over the
stations, whatever the number of subscribers: in slices of SLICE stations with the event loop
running between them, the counts kept from the stations found changed (Hub._pass).

Bounded: at most MAX_SUBSCRIBERS streams (the next is answered 503), at most MAX_PER_OWNER of
them for one credential (an API token, with the dashboard sessions opened with it; or one
address when the API asks for no token), so that one reader cannot take every slot (the next
is answered 429); each has a queue of
QUEUE_LEN events, a slow reader loses the oldest (counted: the next event carries `dropped`,
the page then reloads what it shows); a comment line every HEARTBEAT_S keeps proxies from
closing an idle stream and finds readers that went away.
"""
import asyncio
import collections
import json
import logging

from aiohttp import web

from picocharge.firmware import fields
from picocharge.firmware.fields import STATUSES

from .httputil import error

log = logging.getLogger(__name__)

TICK_S = 1.0
HEARTBEAT_S = 15.0
GONE_CHECK_S = 1.0      # how often an idle stream looks whether its reader went away
MAX_SUBSCRIBERS = 64
MAX_PER_OWNER = 8       # streams one token (or one address without API auth) may hold: a few tabs
QUEUE_LEN = 32
MAX_IDS = 200           # stations one subscriber may follow (a page of the overview)
HOT_C = 50.0            # enclosure temperature counted as "hot" (the firmware's default max_temp_c)
MAX_PAGE = 500          # stations per page of GET /api/fleet at most
SLICE = 1000            # stations a pass of the hub looks at before the event loop runs again

FILTERS = ("status", "connected", "faulted", "hot", "state")


def _faulted(st):
    return st.get("status") == "Faulted" or st.get("error_code") not in (None, "", "NoError")


_TEMP = fields.READINGS[fields.TEMP][fields.KEY]     # the enclosure temperature


def _hot(st, last):
    t = (last or {}).get(_TEMP)
    return st.get("error_code") == "HighTemperature" or (t is not None and t >= HOT_C)


_BUCKETS = frozenset(STATUSES)


def _share(sid, st, sessions, last):
    """What one station adds to counts(): (connected, faulted, hot, pending, its status or "none")."""
    s = st.get("status")
    return (sid in sessions, _faulted(st), _hot(st, last.get(sid)), st.get("state") == "pending",
            s if s in _BUCKETS else "none")


def _key(sid, st, sessions, last, ota):
    """What the dashboard shows of a station, as a value a pass compares with the last one's."""
    r = last.get(sid)
    return (sid in sessions, st.get("state"), st.get("status"), st.get("error_code"), st.get("last_seen"),
            r.get("seq") if r else None, st.get("firmware"), ota.get((sid, "firmware")) if ota else None)


def _empty():
    return {"total": 0, "connected": 0, "offline": 0, "faulted": 0, "hot": 0, "pending": 0,
            "status": dict.fromkeys(STATUSES + ("none",), 0)}


def _copy(c):
    """The counts as sent: a copy the next pass's updates leave alone."""
    return dict(c, status=dict(c["status"]))


def _add(out, share, n=1):
    connected, faulted, hot, pending, status = share
    out["total"] += n
    out["connected" if connected else "offline"] += n
    if faulted:
        out["faulted"] += n
    if hot:
        out["hot"] += n
    if pending:
        out["pending"] += n
    out["status"][status] += n


def counts(gw):
    """Summary counts of the fleet: total, connected, offline, faulted, hot, pending, and per status."""
    out = _empty()
    sessions, last = gw.connected, gw.last
    for sid, st in gw.stations.items():
        _add(out, _share(sid, st, sessions, last))
    return out


def _flag(q, name):
    v = q.get(name)
    if v is None or v == "":
        return None
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    raise ValueError("%s must be true or false (1/0), not %r" % (name, v[:20]))


def _int(q, name, default, lo, hi):
    v = q.get(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise ValueError("%s must be an integer %d..%d, not %r" % (name, lo, hi, v[:20]))
    if not lo <= n <= hi:
        raise ValueError("%s must be an integer %d..%d, not %d" % (name, lo, hi, n))
    return n


def fleet_page(gw, q):
    """GET /api/fleet: {total, page, limit, pages, counts, items} for the query `q` (a mapping):
    q (station id contains, any case), status, connected, faulted, hot, state; page (from 1),
    limit (1..MAX_PAGE). ValueError says which parameter is wrong."""
    unknown = sorted(set(q) - {"q", "page", "limit"} - set(FILTERS))
    if unknown:
        raise ValueError("unknown parameter %s: use q, page, limit, %s" % (unknown[0][:40], ", ".join(FILTERS)))
    text = (q.get("q") or "").strip().lower()
    if len(text) > 64:
        raise ValueError("q is a part of a station id: 64 characters at most")
    status = q.get("status") or None
    if status is not None and status not in STATUSES + ("none",):
        raise ValueError("status must be one of %s or none, not %r" % (", ".join(STATUSES), status[:40]))
    state = q.get("state") or None
    if state is not None and state not in ("accepted", "pending", "rejected"):
        raise ValueError("state must be accepted, pending or rejected, not %r" % state[:40])
    connected, faulted, hot = _flag(q, "connected"), _flag(q, "faulted"), _flag(q, "hot")
    limit = _int(q, "limit", 50, 1, MAX_PAGE)
    page = _int(q, "page", 1, 1, 10 ** 6)
    sessions, last = gw.connected, gw.last
    hits = []
    for sid in sorted(gw.stations):
        st = gw.stations[sid]
        if text and text not in sid.lower():
            continue
        if status is not None and (st.get("status") or "none") != status:
            continue
        if state is not None and st.get("state") != state:
            continue
        if connected is not None and (sid in sessions) != connected:
            continue
        if faulted is not None and _faulted(st) != faulted:
            continue
        if hot is not None and _hot(st, last.get(sid)) != hot:
            continue
        hits.append(sid)
    total = len(hits)
    first = (page - 1) * limit
    return {"total": total, "page": page, "limit": limit, "pages": max(1, -(-total // limit)),
            "counts": counts(gw), "items": [gw.station_view(s) for s in hits[first:first + limit]]}


HUB = web.AppKey("events_hub", object)


class Subscriber:
    __slots__ = ("ids", "queue", "dropped", "wake", "owner")

    def __init__(self, ids, owner=None):
        self.ids = ids          # a set of station ids, or None for every station
        self.owner = owner      # who opened it (MAX_PER_OWNER)
        self.queue = collections.deque()
        self.dropped = 0
        self.wake = asyncio.Event()

    def put(self, event):
        if len(self.queue) >= QUEUE_LEN:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(event)
        self.wake.set()


class Hub:
    """The subscribers and the ticker; one per aiohttp app (app[HUB], made by web.make_app)."""

    def __init__(self, gw):
        self.gw = gw
        self.subscribers = set()
        self.dropped = 0        # events dropped for slow readers, all subscribers together
        self.refused = 0        # streams refused at MAX_SUBSCRIBERS or MAX_PER_OWNER
        self.owners = collections.Counter()     # owner -> streams open
        self._snap = {}         # station -> (its key, its share of the counts) at the last pass
        self._live = None       # the counts, kept up to date by each pass
        self._counts = None     # the counts last sent
        self._task = None
        self.closed = False

    # --- life cycle (web.make_app: on_startup / on_shutdown) ------------------
    async def start(self, _app=None):
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, _app=None):
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for s in self.subscribers:
            s.wake.set()

    async def _run(self):
        while True:
            await asyncio.sleep(TICK_S)
            try:
                for _ in self._pass():
                    await asyncio.sleep(0)      # the loop's other work, between two slices
            except Exception:
                log.exception("events: tick failed")

    # --- what changed -----------------------------------------------------------
    def tick(self):
        """One whole pass at once (tests, benchmarks): see _pass."""
        for _ in self._pass():
            pass

    def _pass(self):
        """One pass: the stations that changed since the last pass and the counts, to every
        subscriber. A generator: it yields after every SLICE stations, and the ticker lets the
        event loop run there (at 10,000 stations a whole pass held it 20-30 ms once a second);
        what changes meanwhile is seen by this pass or the next.

        The counts are kept up to date from the stations that changed (each one's share of them
        is kept with its key: everything a share reads is in the key, the temperature through the
        reading's seq), not counted again over the fleet: that second pass was a third to two
        thirds of a tick (benchmarks/fleet_scale.py, "dashboard stream")."""
        if not self.subscribers:
            self._snap.clear()
            self._counts = None
            return
        snap = self._snap
        changed = []
        stations, sessions, last, ota = self.gw.stations, self.gw.connected, self.gw.last, self.gw.ota_last
        c = self._live
        items = list(stations.items())
        for i in range(0, len(items), SLICE):
            if i:
                yield
            for sid, st in items[i:i + SLICE]:
                k = _key(sid, st, sessions, last, ota)
                old = snap.get(sid)
                if old is None or old[0] != k:      # changed, or new since the last pass
                    changed.append(sid)
                    share = _share(sid, st, sessions, last)
                    if old is not None:
                        _add(c, old[1], -1)
                    _add(c, share)
                    snap[sid] = (k, share)
        gone = [sid for sid in snap if sid not in stations]
        for sid in gone:
            _add(c, snap.pop(sid)[1], -1)
        if gone:
            changed = [sid for sid in changed if sid in stations]   # removed while the pass went on
        new_counts = None
        if c != self._counts:
            new_counts = self._counts = _copy(c)
        if not changed and not gone and new_counts is None:
            return
        views = {sid: self.gw.station_view(sid) for sid in changed}
        for s in self.subscribers:
            mine = [views[sid] for sid in changed if s.ids is None or sid in s.ids]
            mine_gone = [sid for sid in gone if s.ids is None or sid in s.ids]
            if mine or mine_gone or new_counts is not None:
                ev = {"stations": mine}
                if mine_gone:
                    ev["removed"] = mine_gone
                if new_counts is not None:
                    ev["counts"] = new_counts
                s.put(ev)

    # --- one stream -----------------------------------------------------------------
    def subscribe(self, ids, owner=None):
        """A new Subscriber; None when the gateway's streams are all taken, False when `owner`'s are."""
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            self.refused += 1
            return None
        if owner is not None and self.owners[owner] >= MAX_PER_OWNER:
            self.refused += 1
            return False
        if not self.subscribers:        # the first one: start from what is there now
            sessions, last, ota = self.gw.connected, self.gw.last, self.gw.ota_last
            self._snap = {}
            self._live = _empty()
            for sid, st in self.gw.stations.items():
                share = _share(sid, st, sessions, last)
                self._snap[sid] = (_key(sid, st, sessions, last, ota), share)
                _add(self._live, share)
            self._counts = _copy(self._live)
        s = Subscriber(ids, owner)
        self.subscribers.add(s)
        if owner is not None:
            self.owners[owner] += 1
        return s

    def state(self):
        """For /healthz: streams open, events dropped for slow readers, streams refused (all since start)."""
        return {"open": len(self.subscribers), "dropped": self.dropped + sum(s.dropped for s in self.subscribers),
                "refused": self.refused}

    def unsubscribe(self, s):
        if s in self.subscribers and s.owner is not None:
            self.owners[s.owner] -= 1
            if self.owners[s.owner] <= 0:
                del self.owners[s.owner]
        self.subscribers.discard(s)
        self.dropped += s.dropped


def parse_ids(q):
    """The stations a stream follows: None (no ids parameter) for all, an empty set for none
    (`ids=`: the counts alone, for a page that shows no station)."""
    raw = q.get("ids")
    if raw is None:
        return None
    ids = [i for i in raw.split(",") if i]
    if len(ids) > MAX_IDS:
        raise ValueError("ids: %d stations at most per stream (a page of the overview), not %d" % (MAX_IDS, len(ids)))
    return set(ids)


def _frame(name, data):
    return ("event: %s\ndata: %s\n\n" % (name, json.dumps(data, separators=(",", ":"), allow_nan=False))).encode()


async def stream(gw, hub, request, allowed=None, owner=None):
    """GET /api/events. With `Accept: text/event-stream` (what EventSource sends): a `hello`
    event (the counts), then `update` events as the stations change, a comment line every
    HEARTBEAT_S. Without it: the `hello` event alone, then the end (a snapshot, for a client
    that cannot hold a stream open). `allowed()` (async, true while the request's credentials
    still hold) is asked again at every heartbeat: a stream ends when its session is signed
    out or its token revoked. `owner` (hashable: the credential) holds MAX_PER_OWNER streams at most."""
    ids = parse_ids(request.query)
    unknown = sorted(set(request.query) - {"ids"})
    if unknown:
        raise ValueError("unknown parameter %s: /api/events takes ids (a comma-separated list of station ids)"
                         % unknown[0][:40])
    live = "text/event-stream" in request.headers.get("Accept", "")
    sub = None
    if live:
        if hub.closed:
            return error(503, "the gateway is stopping: connect again when it is back", {"Retry-After": "30"})
        sub = hub.subscribe(ids, owner)
        if sub is False:
            return error(429, "this token already has %d live streams open, the most one token may hold: close a "
                              "dashboard tab, or use another token" % MAX_PER_OWNER, {"Retry-After": "30"})
        if sub is None:
            return error(503, "%d live streams are open, the most this gateway serves: close a dashboard tab, or "
                              "try again later" % MAX_SUBSCRIBERS, {"Retry-After": "30"})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    try:
        await resp.prepare(request)
        await resp.write(("retry: 3000\n" if live else "").encode() + _frame("hello", {"counts": counts(gw)}))
        if not live:
            await resp.write_eof()
            return resp
        loop = asyncio.get_running_loop()
        checked = wrote = loop.time()
        while not hub.closed:
            if allowed is not None and loop.time() - checked >= HEARTBEAT_S:
                # by the clock, not only when the stream is idle: a busy fleet's updates kept a
                # revoked token's stream going as long as they came (found attacking the gateway)
                if not await allowed():
                    break
                checked = loop.time()
            if not sub.queue:
                sub.wake.clear()
                try:
                    # in steps of a second: a reader that went away frees its slot within one
                    # (aiohttp does not cancel the handler; the socket says it is closing)
                    await asyncio.wait_for(sub.wake.wait(), min(GONE_CHECK_S, HEARTBEAT_S))
                except asyncio.TimeoutError:
                    tr = request.transport
                    if tr is None or tr.is_closing():
                        break
                    if loop.time() - wrote >= HEARTBEAT_S:
                        await resp.write(b": heartbeat\n\n")
                        wrote = loop.time()
                    continue
            while sub.queue:
                ev = sub.queue.popleft()
                if sub.dropped:
                    ev["dropped"] = sub.dropped
                await resp.write(_frame("update", ev))
            wrote = loop.time()
    except ConnectionResetError:     # the reader went away
        pass
    finally:
        if sub is not None:
            hub.unsubscribe(sub)
    return resp
