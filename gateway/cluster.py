"""Several gateway processes on one PostgreSQL database (issue 15, docs/scale-out.md).

Every gateway on a postgresql:// database is a member of the database's cluster: one process or
many, on one host (`--workers N`) or several behind a load balancer. What one process needs to
know about the others goes through the database it already shares with them:

- PostgreSQL LISTEN/NOTIFY on one channel (`picocharge`), not the MQTT broker: the database is
  there and shared by every process by definition, while the broker is optional (a gateway may
  run without `--mqtt`), and a NOTIFY sent inside a transaction is delivered at its commit, so
  a station's row changed by one process is read again by the others only once it is there.
  Payloads are small JSON objects, at most NOTIFY_MAX bytes (PostgreSQL takes 8000): ids only,
  or a batch of last readings cut to size; a command's body and answer stay in a table.
- Who is alive: each process has a row in cluster_nodes with the backend pid of its listening
  connection; PostgreSQL ends that backend as soon as the process dies (its kernel closes the
  socket), so a killed process is seen gone at the next tick (TICK_S), and one whose host
  vanished when its row is not renewed for NODE_TTL_S (tcp keepalives end its backend too).
- Where each station is connected: cluster_sessions (station, node, gen), gen from a sequence.
  A station that connects to B while A still holds it (a network split): B's row gets a newer
  gen, B tells everyone, A closes its connection ("replaced by a new connection"), as one
  process does with two connections of one station.
- What every process shows: the API and the dashboard of any process show every station. The
  stations and id_tags tables have triggers (migration 0003) that NOTIFY their key on a change:
  each process reads that row again. The last reading and last_seen of the stations connected
  to a process go to the others every VIEW_S in batches.
- Commands: a command sent to A for a station connected to B is written to cluster_calls, B is
  told its id, runs it (commands.send_command, with today's answers and timeouts) and writes
  the answer back; A answers the HTTP request with it.
- Uplink work has one owner: leases in cluster_leases, one for the MQTT stream, one for the
  load balancer's planning (loadbalance.py) and one per ThingSpeak shard (station ids hashed
  into SHARDS). Each process renews its leases every TICK_S, takes free or dead ones up to its
  fair share and gives back what is over it; a lease not renewed for LEASE_S (or whose owner's
  backend is gone) is taken over by another.
"""
import asyncio
import json
import logging
import math
import os
import secrets
import socket
import time
import zlib

import psycopg

from .commands import CommandError, send_built, send_command
from .loadbalance import LEASE as LB_WORK
from .store import StoreError

log = logging.getLogger(__name__)

CHANNEL = "picocharge"
NOTIFY_MAX = 7900       # bytes of one NOTIFY payload (PostgreSQL: under 8000)
SHARDS = 16             # ThingSpeak work: station ids hashed into this many leases
TICK_S = 1.0            # heartbeat, leases, dead processes
TAGS_LINGER_S = 0.05    # id-tag NOTIFYs gathered this long before they are read back
NODE_TTL_S = 10.0       # a process whose row is not renewed this long is gone
LEASE_S = 10.0          # a lease not renewed this long is free
VIEW_S = 0.25           # the last readings of local stations go to the others this often
SEEN_S = 5.0            # ... and the time of their last frame (Heartbeats) at least this often
CALL_MARGIN_S = 5.0     # a forwarded command waits the response timeout and this much more
MQTT_WORK = "mqtt"
CLEAN_S = 600.0         # rows of processes gone this long, and calls this old, are deleted
JOIN_BATCH = 1000       # station connections recorded by one statement (connected_here)


def shard_of(sid):
    return zlib.crc32(sid.encode("utf-8")) % SHARDS


def ts_work(shard):
    return "thingspeak:%d" % shard


# the load groups are planned by one process (loadbalance.py)
ALL_WORK = (MQTT_WORK, LB_WORK) + tuple(ts_work(i) for i in range(SHARDS))

_ALIVE = ("(SELECT node FROM cluster_nodes n WHERE n.seen > now() - make_interval(secs => %s) AND EXISTS "
          "(SELECT 1 FROM pg_stat_activity a WHERE a.pid = n.pid))")


class Cluster:
    """One gateway process's membership. gw.cluster; None on SQLite."""

    def __init__(self, gw, url):
        self.gw = gw
        self.url = url
        self.node = "%s-%d-%s" % (socket.gethostname()[:40], os.getpid(), secrets.token_hex(3))
        self.remote = {}        # station id -> (node, gen) of its connection to another process
        self.leases = set()     # works this process holds
        self.nodes = 1          # processes alive, at the last tick
        self.alive = set()      # their names
        self._conn = None       # queries, NOTIFY
        self._listen = None     # LISTEN
        self._tasks = []
        self._calls = {}        # call id -> future of its answer (commands this process forwarded)
        self._tags = set()      # id tags changed (NOTIFY), to be read back (_read_tags)
        self._tags_task = None
        self._rows = set()      # stations whose row changed (NOTIFY), to be read again (_read_rows)
        self._rows_task = None
        self._dirty = set()     # local stations whose last reading changed since the last view batch
        self._sent_seen = {}    # local station -> the last_seen the others were told
        self._lock = asyncio.Lock()
        self._joining = []      # (session, future) of connections waiting to be recorded (connected_here)
        self._join_task = None
        self.takeovers = 0
        self.last_takeover = None   # (work, seconds since its lease ran out or its owner died)

    # --- life cycle ---------------------------------------------------------------
    async def _connect(self):
        try:
            c = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=10,
                                                      application_name="picocharge-gateway-cluster")
            await c.execute("SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; "
                            "SET tcp_keepalives_count = 3")
            return c
        except psycopg.Error as e:
            raise RuntimeError("cluster: cannot connect to the database %s (%s)" % (
                self.gw.store.name, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))

    async def start(self):
        self._conn = await self._connect()
        self._listen = await self._connect()
        await self._listen.execute("LISTEN %s" % CHANNEL)
        pid = self._listen.info.backend_pid
        await self._conn.execute("INSERT INTO cluster_nodes (node, pid) VALUES (%s, %s)", (self.node, pid))
        await self._conn.execute("INSERT INTO cluster_leases (work, node, until) SELECT w, NULL, now() FROM "
                                 "unnest(%s::text[]) w ON CONFLICT (work) DO NOTHING", (list(ALL_WORK),))
        await self._refresh_remote()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listener()), loop.create_task(self._ticker()),
                       loop.create_task(self._viewer())]
        log.info("cluster: this gateway process is %s on %s", self.node, self.gw.store.name)

    async def first_leases(self):
        """Take this process's first share of the uplink work (before the uplinks start)."""
        await self._tick()

    async def stop(self):
        if self._tags_task is not None:
            self._tags_task.cancel()
        if self._rows_task is not None:
            self._rows_task.cancel()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        self.leases = set()     # (a second stop, or the uplinks stopping after this: nothing is held)
        if self._conn is not None:
            try:
                await self._conn.execute("UPDATE cluster_leases SET node=NULL, until=now() WHERE node=%s",
                                         (self.node,))
                await self._conn.execute("DELETE FROM cluster_nodes WHERE node=%s", (self.node,))
            except psycopg.Error as e:
                log.warning("cluster: could not give back the leases of %s (%s): they are free in %d s",
                            self.node, e, LEASE_S)
        for c in (self._conn, self._listen):
            if c is not None:
                try:
                    await c.close()
                except Exception:   # noqa: B902 - closing whatever state it is in
                    pass
        self._conn = self._listen = None

    async def _notify(self, msg):
        text = json.dumps(msg, separators=(",", ":"))
        if len(text.encode("utf-8")) > NOTIFY_MAX:
            raise ValueError("cluster: a %s message of %d bytes is over NOTIFY's limit" % (msg.get("k"), len(text)))
        await self._q("SELECT pg_notify(%s, %s)", (CHANNEL, text))

    async def _q(self, sql, args=()):
        """Rows of one statement on the query connection (made again once if it was lost)."""
        async with self._lock:
            for attempt in (1, 2):
                try:
                    cur = await self._conn.execute(sql, args)
                    return await cur.fetchall() if cur.description else None
                except psycopg.OperationalError:
                    if attempt == 2 or not self._conn.closed:
                        raise
                    log.warning("cluster: lost the query connection to %s: connecting again", self.gw.store.name)
                    self._conn = await self._connect()

    # --- who holds what ------------------------------------------------------------
    @staticmethod
    def work_of(sid):
        """The lease of a station's ThingSpeak work."""
        return ts_work(shard_of(sid))

    def holds(self, work):
        return work in self.leases

    def owns_station(self, sid):
        return ts_work(shard_of(sid)) in self.leases

    async def _refresh_remote(self):
        rows = await self._q("SELECT station, node, gen FROM cluster_sessions WHERE node <> %s AND node IN " + _ALIVE,
                             (self.node, NODE_TTL_S))
        self.remote = {sid: (node, gen) for sid, node, gen in rows}

    async def _ticker(self):
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: B902 - the database away: try again next tick
                log.warning("cluster: tick failed (%s); the leases lapse in %d s unless it works again", e, LEASE_S)
                if self.leases and time.monotonic() - self._renewed > LEASE_S * 0.6:
                    await self._lost(set(self.leases), "not renewed")

    _renewed = 0.0
    _cleaned = 0.0

    async def _tick(self):
        # (an upsert: a process cut off for CLEAN_S had its row deleted by the others)
        await self._q("INSERT INTO cluster_nodes (node, pid) VALUES (%s, %s) ON CONFLICT (node) DO UPDATE SET "
                      "seen=now(), pid=excluded.pid", (self.node, self._listen.info.backend_pid))
        rows = await self._q("SELECT node FROM cluster_nodes n WHERE n.seen > now() - make_interval(secs => %s) AND "
                             "EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = n.pid)", (NODE_TTL_S,))
        alive = {r[0] for r in rows}
        alive.add(self.node)
        self.nodes = len(alive)
        self.alive = alive
        # the sessions of processes that died: their stations reconnect (to any process)
        for sid in [s for s, (node, _g) in self.remote.items() if node not in alive]:
            del self.remote[sid]
        now = time.monotonic()
        if now - self._cleaned > CLEAN_S:
            # what processes that died left: their rows, their stations' places, calls never answered
            self._cleaned = now
            await self._q("DELETE FROM cluster_nodes WHERE seen < now() - make_interval(secs => %s)", (CLEAN_S,))
            await self._q("DELETE FROM cluster_sessions WHERE node NOT IN (SELECT node FROM cluster_nodes)")
            await self._q("DELETE FROM cluster_calls WHERE created < now() - make_interval(secs => %s)", (CLEAN_S,))
        held = {r[0] for r in await self._q(
            "UPDATE cluster_leases SET until = now() + make_interval(secs => %s) WHERE node=%s RETURNING work",
            (LEASE_S, self.node))}
        self._renewed = time.monotonic()
        lost = self.leases - held
        if lost:
            await self._lost(lost, "taken by another process")
        fair = math.ceil(len(ALL_WORK) / self.nodes)
        want = fair - len(held)
        if want > 0:
            got = await self._q(
                "WITH free AS (SELECT l.work, l.node, EXTRACT(EPOCH FROM now() - l.until) AS late FROM cluster_leases l "
                "WHERE l.node IS NULL OR l.until < now() OR l.node NOT IN " + _ALIVE +
                " ORDER BY (l.work = 'mqtt') DESC, l.work LIMIT %s FOR UPDATE SKIP LOCKED) "
                "UPDATE cluster_leases c SET node=%s, until=now() + make_interval(secs => %s) FROM free "
                "WHERE c.work = free.work RETURNING c.work, free.node, free.late",
                (NODE_TTL_S, want, self.node, LEASE_S))
            for work, was, late in got:
                held.add(work)
                if was is not None and was != self.node:
                    self.takeovers += 1
                    self.last_takeover = (work, was)
                    log.warning("cluster: took over %s from %s (gone)", work, was)
        elif want < 0 and self.nodes > 1:
            # over the fair share (another process came): give back ThingSpeak shards first
            extra = sorted((w for w in held if w != MQTT_WORK), reverse=True)[:-want]
            if extra:
                await self._lost(set(extra), "given back to balance")
                await self._q("UPDATE cluster_leases SET node=NULL, until=now() WHERE node=%s AND work = ANY(%s)",
                              (self.node, extra))
                held -= set(extra)
        gained = held - self.leases
        self.leases = held
        if gained:
            log.info("cluster: %s holds %s", self.node, ", ".join(sorted(gained)))
            self.gw.leases_gained(gained)

    async def _lost(self, works, why):
        self.leases -= works
        log.warning("cluster: %s no longer holds %s (%s)", self.node, ", ".join(sorted(works)), why)
        await self.gw.leases_lost(works)

    # --- the channel ----------------------------------------------------------------
    async def _listener(self):
        backoff = 0.5
        while True:
            try:
                async for n in self._listen.notifies():
                    backoff = 0.5
                    try:
                        msg = json.loads(n.payload)
                        log.debug("cluster: %s", n.payload[:300])
                        await self._on(msg)
                    except (ValueError, KeyError, TypeError, AttributeError) as e:
                        log.warning("cluster: a message that is not ours was ignored (%s: %s): %r", type(e).__name__,
                                    e, n.payload[:200])
                    except StoreError as e:     # a station's row not read again now: the next change does
                        log.warning("cluster: message %r not handled: %s", n.payload[:200], e)
                    except psycopg.OperationalError:
                        raise
                    except Exception:   # noqa: B902 - a bug of ours: logged, the listener goes on
                        log.exception("cluster: message %r failed", n.payload[:200])
            except psycopg.OperationalError as e:
                # the server restarted or the network broke: what was sent meanwhile is lost, so
                # the picture is read again (where the stations are) once listening again
                log.warning("cluster: lost the listening connection to %s (%s): connecting again in %.1f s",
                            self.gw.store.name, str(e).strip().splitlines()[0] if str(e).strip() else "", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                try:
                    self._listen = await self._connect()
                    await self._listen.execute("LISTEN %s" % CHANNEL)
                    await self._q("INSERT INTO cluster_nodes (node, pid) VALUES (%s, %s) ON CONFLICT (node) DO "
                                  "UPDATE SET seen=now(), pid=excluded.pid", (self.node, self._listen.info.backend_pid))
                    await self._refresh_remote()
                    log.info("cluster: listening again on %s", self.gw.store.name)
                except (RuntimeError, psycopg.Error) as e2:
                    log.warning("cluster: %s", e2)

    async def _read_tags(self):
        """The id tags NOTIFY named, read back in batches (one query per 500) a moment after the
        first, so a bulk change costs a few queries, and the listener goes on meanwhile (it
        only adds names to a set: forwarded commands are not held up behind 20,000 reads)."""
        try:
            while self._tags:
                await asyncio.sleep(TAGS_LINGER_S)
                tags, self._tags = self._tags, set()
                try:
                    await self.gw.id_tags_changed(tags)
                except StoreError as e:
                    log.warning("cluster: %d changed id tags not read again (%s): the next change of each does",
                                len(tags), e)
        finally:
            self._tags_task = None

    async def _read_rows(self):
        """The stations NOTIFY named, read again (no wait: a change is seen as soon as the store
        reads it), those named while a read was on together in the next read, each once."""
        try:
            while self._rows:
                sids, self._rows = self._rows, set()
                try:
                    await self.gw.station_rows_changed(sids)
                except StoreError as e:     # not read again now: the next change of each does
                    log.warning("cluster: %d stations' changed rows not read again: %s", len(sids), e)
        finally:
            self._rows_task = None

    async def _on(self, msg):
        k = msg.get("k")
        gw = self.gw
        if k == "s":
            # read again by a task of its own, each station once however many changes came
            # meanwhile: the listener goes on at once. Read here, one after the other, a storm of
            # stations registering on another process (2,000, --auth none: an INSERT and a few
            # UPDATEs each) held every message behind it: this process answered 404 (unknown
            # station) for stations connected there 10 s before, and forwarded commands waited
            self._rows.add(str(msg["s"]))
            if self._rows_task is None:
                self._rows_task = asyncio.get_running_loop().create_task(self._read_rows())
        elif k == "t":     # read back together: a CSV import of 20,000 tags is 20,000 NOTIFYs
            self._tags.add(str(msg["t"])[:64])
            if self._tags_task is None:
                self._tags_task = asyncio.get_running_loop().create_task(self._read_tags())
        elif msg.get("n") == self.node and k not in ("q", "a"):
            return  # our own
        elif k == "l":
            await gw.localsync.reread(str(msg["s"])[:64])
        elif k == "c":      # "cs": [[station, gen], ...] (one station: "s", "g")
            for sid, g in msg.get("cs") or [[msg["s"], msg["g"]]]:
                await self._connected_elsewhere(sid, msg["n"], g)
        elif k == "d":
            sid = msg["s"]
            if self.remote.get(sid, (None, None))[1] == msg["g"]:
                del self.remote[sid]
                gw.remote_changed(sid)
        elif k == "v":
            for sid, (seen, last) in msg["v"].items():
                gw.remote_view(sid, seen, last)
        elif k == "q" and msg.get("n") == self.node:
            asyncio.get_running_loop().create_task(self._serve_call(msg["id"]))
        elif k == "a" and msg.get("n") == self.node:
            fut = self._calls.get(msg["id"])
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _connected_elsewhere(self, sid, node, g):
        """Station sid connected to process `node` with gen g (a "c" message)."""
        gw = self.gw
        known = self.remote.get(sid)
        if known is not None and known[1] > g:
            return      # news older than what is known (messages of two processes cross)
        sess = gw.sessions.get(sid)
        mine = getattr(sess, "cluster_gen", None) if sess is not None else None
        if mine is not None and mine > g:
            return      # the connection here is the newer one
        self.remote[sid] = (node, g)
        if mine is not None:
            log.warning("station=%s connected again, to gateway process %s: closing the connection here", sid, node)
            await sess._connection.close(1000, "replaced by a new connection")
        gw.remote_changed(sid)

    # --- sessions -------------------------------------------------------------------
    async def local_list_changed(self, sid):
        """localsync: the operator changed station sid's local-list row through this process."""
        await self._notify({"k": "l", "s": sid, "n": self.node})

    async def connected_here(self, sess):
        """A station connected to this process: recorded with a new gen, everyone told. The
        connections that come while one is being recorded are recorded together (one statement,
        a NOTIFY per few hundred): when a process dies its thousands of stations come back at
        once, and one round trip each on the query connection, one after the other, made the
        last of 5,000 wait 20 s (issue 15's kill at 10,000 stations)."""
        sid = sess.id
        fut = asyncio.get_running_loop().create_future()
        self._joining.append((sess, fut))
        if self._join_task is None:
            self._join_task = asyncio.get_running_loop().create_task(self._join())
        g = await fut
        other = self.remote.get(sid)
        if other is not None and other[1] > g:   # a newer connection elsewhere came first
            await sess._connection.close(1000, "replaced by a new connection")
        else:
            self.remote.pop(sid, None)

    async def _join(self):
        try:
            while self._joining:
                batch, ids, rest = [], set(), []
                for item in self._joining:      # a station twice (it connected again): the next batch
                    (rest if item[0].id in ids or len(batch) >= JOIN_BATCH else batch).append(item)
                    ids.add(item[0].id)
                self._joining = rest
                try:
                    rows = await self._q(
                        "INSERT INTO cluster_sessions (station, node, gen) SELECT s, %s, nextval('cluster_gen') "
                        "FROM unnest(%s::text[]) AS s ON CONFLICT (station) DO UPDATE SET node=excluded.node, "
                        "gen=excluded.gen, since=now() RETURNING station, gen", (self.node, [x[0].id for x in batch]))
                    gens = dict(rows)
                    for sess, _f in batch:
                        sess.cluster_gen = gens[sess.id]    # before the others hear of it
                    part, size = [], 40
                    for sess, _f in batch:
                        n = len(sess.id) + 24
                        if size + n > NOTIFY_MAX - 60:
                            await self._notify({"k": "c", "n": self.node, "cs": part})
                            part, size = [], 40
                        part.append([sess.id, sess.cluster_gen])
                        size += n
                    await self._notify({"k": "c", "n": self.node, "cs": part})
                except Exception as e:      # noqa: B902 - each waiting connection raises it
                    for _s, f in batch:
                        if not f.done():
                            f.set_exception(e)
                    continue
                for sess, f in batch:
                    if not f.done():
                        f.set_result(sess.cluster_gen)
        finally:
            self._join_task = None

    async def disconnected_here(self, sess):
        g = getattr(sess, "cluster_gen", None)
        if g is None:
            return
        await self._q("DELETE FROM cluster_sessions WHERE station=%s AND gen=%s", (sess.id, g))
        await self._notify({"k": "d", "s": sess.id, "n": self.node, "g": g})

    # --- the view of local stations, to the others --------------------------------
    def touched(self, sid):
        self._dirty.add(sid)

    def _seen_changed(self):
        """Local stations whose last frame (a Heartbeat, say: no reading) is newer than what the
        others were told; looked at every SEEN_S."""
        stations, sent = self.gw.stations, self._sent_seen
        for sid in self.gw.sessions:
            st = stations.get(sid)
            seen = st.get("last_seen") if st else None
            if seen and sent.get(sid) != seen:
                self._dirty.add(sid)
        if len(sent) > 2 * len(self.gw.sessions) + 1000:
            self._sent_seen = {sid: sent[sid] for sid in self.gw.sessions if sid in sent}

    async def _viewer(self):
        looked = time.monotonic()
        while True:
            await asyncio.sleep(VIEW_S)
            if time.monotonic() - looked >= SEEN_S:
                looked = time.monotonic()
                self._seen_changed()
            if not self._dirty:
                continue
            dirty, self._dirty = self._dirty, set()
            batch, size = {}, 40
            try:
                for sid in dirty:
                    st = self.gw.stations.get(sid)
                    item = [st.get("last_seen") if st else None, self.gw.last.get(sid)]
                    n = len(json.dumps(item, separators=(",", ":"))) + len(sid) + 6
                    if n > NOTIFY_MAX - 60:
                        continue    # cannot happen with the reading table's keys; never sent whole
                    if size + n > NOTIFY_MAX - 60:
                        await self._notify({"k": "v", "n": self.node, "v": batch})
                        batch, size = {}, 40
                    batch[sid] = item
                    self._sent_seen[sid] = item[0]
                    size += n
                if batch:
                    await self._notify({"k": "v", "n": self.node, "v": batch})
            except psycopg.Error as e:
                log.warning("cluster: the last readings of %d stations were not told to the others (%s)",
                            len(dirty), e)

    # --- commands ---------------------------------------------------------------------
    async def forward(self, sid, name, body, timeout):
        """The answer of station sid, connected to another process, to command `name`; CommandError
        as send_command raises it there (409 not connected, 502, 504...)."""
        where = self.remote.get(sid)
        if where is None:
            raise CommandError(409, "station %s is not connected" % sid)
        cid = secrets.token_hex(12)
        fut = asyncio.get_running_loop().create_future()
        self._calls[cid] = fut
        try:
            await self._q("INSERT INTO cluster_calls (id, station, name, body, origin) VALUES (%s,%s,%s,%s,%s)",
                          (cid, sid, name, json.dumps(body), self.node))
            await self._notify({"k": "q", "id": cid, "n": where[0]})
            end = time.monotonic() + timeout + CALL_MARGIN_S
            while not fut.done():
                left = end - time.monotonic()
                if left <= 0:
                    raise CommandError(504, "station %s (connected to gateway process %s) did not answer %s in time"
                                       % (sid, where[0], name))
                try:
                    await asyncio.wait_for(asyncio.shield(fut), min(left, TICK_S))
                except asyncio.TimeoutError:
                    if where[0] not in self.alive:
                        # the process that held it died (the tick saw it gone): no answer will come,
                        # wherever the station is now (it may have reconnected here already: the
                        # bench's command probe saw such calls wait 7-8 s). A station that only
                        # left a live process is that process's to report (502 "disconnected after
                        # receiving ..."), with its answer row: until then, wait for it
                        raise CommandError(502, "gateway process %s, which held station %s, stopped before the "
                                                "station's answer to %s: it reconnects to another process; send the "
                                                "command again then" % (where[0], sid, name), {"disconnected": True})
            rows = await self._q("SELECT answer FROM cluster_calls WHERE id=%s", (cid,))
            ans = json.loads(rows[0][0]) if rows and rows[0][0] else None
            if ans is None:
                raise CommandError(502, "gateway process %s gave no answer for station %s" % (where[0], sid))
            if ans.get("error") is not None:
                raise CommandError(ans["status"], ans["error"], ans.get("extra"))
            return ans["result"]
        finally:
            self._calls.pop(cid, None)
            try:
                await self._q("DELETE FROM cluster_calls WHERE id=%s", (cid,))
            except psycopg.Error:
                pass

    async def _serve_call(self, cid):
        rows = await self._q("SELECT station, name, body, origin FROM cluster_calls WHERE id=%s", (cid,))
        if not rows:
            return
        sid, name, body, origin = rows[0]
        try:
            if name.startswith("call:"):    # a call the other process built (a reservation: its id)
                res = await send_built(self.gw.sessions, sid, name[5:], json.loads(body))
            elif name.startswith("ota:"):   # UpdateFirmware, GetDiagnostics: built here, with this link's location
                res = await self.gw.rollouts.send_here(sid, name[4:], json.loads(body))
            else:
                res = await send_command(self.gw.sessions, sid, name, json.loads(body))
            ans = {"result": res}
        except CommandError as e:
            ans = {"error": e.message, "status": e.status, "extra": e.extra}
        log.info("station=%s command %s for gateway process %s: %s", sid, name, origin,
                 ans.get("error") or "answered")
        await self._q("UPDATE cluster_calls SET answer=%s WHERE id=%s", (json.dumps(ans), cid))
        await self._notify({"k": "a", "id": cid, "n": origin})
