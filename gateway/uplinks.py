"""Uplinks: each is an outbox consumer (read undelivered readings, send, mark delivered).

The outbox is a cursor per (uplink, station) in the `outbox` table: readings
with a larger id are undelivered. A cursor only moves after the far side
acknowledged (MQTT PUBACK, ThingSpeak entry id / 202), so delivery is
at-least-once and in order, across outages of any length and gateway restarts.

- MqttUplink: paho-mqtt 2.x, QoS 1, telemetry to <prefix>/<station>/telemetry
  (fields.telemetry_json + "src":"gateway"), retained <prefix>/<station>/status,
  last will on <prefix>/gateway/status. Optional ingest of board telemetry from
  <prefix>/+/telemetry; payloads marked "src":"gateway" are the gateway's own
  and are ignored, so ingest and publish can share one broker and prefix. MQTT 5,
  so that the ingest subscription is noLocal (the broker does not send the gateway's
  own telemetry back: that echo was a third of the uplink's CPU); 3.1.1 with a broker
  that refuses MQTT 5. A batch (BATCH, 4,000, and larger while there is a backlog: "How the
  forwarding keeps up" below) is published at once, its PUBACKs are counted off a set of
  message ids, and the cursor moves and the next batch is read in one store transaction:
  benchmarks/mqtt_drain.py measures the drain on its own. Readings
  that trickle in (paced load) wait LINGER (50 ms) to go out together.

Exactly once across a takeover (a cluster, cluster.py). The MQTT stream has one owner at a
time; the owner writes its batch in flight (`cluster_leases.inflight_*`) in the transaction that
reads it. When it dies (or loses the broker) mid-batch, the broker may have taken any prefix of
each station's messages in that batch, and MQTT has no request "what did you take". But the
broker can be made to keep the answer: in a cluster each station's telemetry is published
RETAINED, so the broker holds the last message it took on <prefix>/<station>/telemetry, and one
client's QoS 1 messages on one topic are taken in the order sent. The new owner subscribes, with
a client of its own, to the telemetry topics of the stations in the batch in doubt, reads the
retained messages (a marker it publishes after the SUBACK tells when all have come), and for
each station skips the batch's rows up to and including the one whose payload (seq included)
equals the retained one; the rest are sent. A station without such a message had none of its
rows taken. If the broker cannot be asked (three attempts of PROBE_TIMEOUT, refused), every row is sent: at-least-once,
as before, said in the log. Why this and not another design: the alternatives are a dedupe
store beside the broker (a second system to run and keep consistent), persistent MQTT sessions
handed from process to process (a session belongs to one client id, and MQTT 5 does not say
which of a dead client's in-flight messages the broker took), or asking subscribers to drop
repeats by seq (the issue asks 0). Retained telemetry costs the broker one stored message per
station (a few hundred bytes; 10,000 stations: a few MB) and no extra message; a subscriber
gets each station's latest reading at once when it subscribes, flagged retained (a counter of
live messages skips retain-flagged ones; the bench's does). It holds for a process that dies
with its host's kernel closing its sockets (the broker has read all it will ever read of that
connection before the lease moves); a publish the network delivers after the takeover (a host
cut off, its TCP retransmitting) is outside it. Alone (SQLite) telemetry is not retained.
- ThingSpeakUplink: one worker per station with a channel and write key; the
  `thingspeak` package for single writes, the bulk JSON API for a backlog,
  created_at on every entry, the channel interval obeyed across all writes.

Readings that share a second on a ThingSpeak channel. ThingSpeak keeps one entry per
created_at in a channel, at one-second resolution, and drops any later one silently (a bulk
write still answers 202). A station's readings can share a second (a MeterValues sample and a
Climate DataTransfer at the same aligned instant, a burst replayed from a board's journal, a
sample interval under a second), so the uplink sends ONE entry per second per channel, holding
each field's latest value in that second (latest = stored last): every field any of those
readings carries is in the channel, and a field two of them carry holds the later value.
- `merged` counts readings that went into an entry together with a later reading of the same
  second, `superseded` the field values a later reading in the same second replaced (the only
  values the channel does not get).
- A second is written once: the rows of the newest second in the outbox wait until no reading
  arrived for `settle` seconds (1 s, or the interval when shorter) and a bulk write never ends
  inside a second, so a second's readings go in one write. A reading that still comes for a
  second the channel already holds (its station's clock went back, a replay after that second
  was sent) cannot be added to that entry: it is not sent, counted in `late` and logged, and
  the outbox moves on. `delivered` counts only readings in entries ThingSpeak stored.
"""
import asyncio
import json
import logging
import os
import re
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import requests
import thingspeak

from picocharge.firmware import fields

from .logonce import LogOnce
from .mqttfast import BatchClient
from .readings import reading_from_dict
from .store import StoreError, reading_row

log = logging.getLogger(__name__)
_ONCE = LogOnce(log)

# a board's telemetry is one flat JSON object of a few hundred bytes: anything much larger is
# dropped unread
MAX_TELEMETRY_BYTES = 16384
# telemetry messages waiting for the store at once; more are dropped (memory stays bounded
# whatever a publisher sends while the store is slow or failing)
MAX_INGEST_INFLIGHT = 10000
_VARYING = re.compile(r"'[^']*'|-?\d[\d.e+-]*")

_OWN_SUFFIX = b',"src":"gateway"}'
# How the forwarding keeps up with a saturated loop. A batch's cycle (publish, the PUBACKs, the
# next read, which queues behind the stations' writes in the store's thread) takes several turns
# of the event loop, each long under full ingest: in closed loop at 10,000 stations 2-3 s per
# batch of 4,000 (turns of 200-300 ms, the read alone 0.5-1.5 s), so fixed batches forwarded
# ~2,000 readings/s of the ~7,500 ingested. So both grow with the load:
# - a batch reads twice as many readings as the last read found (BATCH at least, MAX_BATCH at
#   most): a backlog is read in larger batches until one read finds the outbox empty-ish, and
#   the cycle's fixed wait is shared by more readings. MAX_BATCH stays far below the 65,535
#   packet ids a batch's PUBACKs are told apart by.
# - a batch is written in chunks with a turn of the loop between them; a chunk works for as long
#   as the stations took in the turn before it (CHUNK_TIME at least, CHUNK_TIME_MAX at most):
#   in a saturated loop the uplink gets about as much of the loop as the stations, in a light one
#   (paced) it writes ~1,000 readings (~12 ms) a turn as before.
# docs/performance.md, "The MQTT outbox in closed loop", has the figures.
BATCH = 4000
MAX_BATCH = 32000
CHUNK_TIME = 0.012
CHUNK_TIME_MAX = 0.1
_CHUNK_STEP = 100       # readings written between two looks at the clock
_SELECT_AFTER = "SELECT * FROM readings WHERE id > ? ORDER BY id LIMIT ?"
_SELECT_STATION_AFTER = "SELECT * FROM readings WHERE station = ? AND id > ? ORDER BY id LIMIT ?"


# The telemetry payload of a readings row: the text of fields.telemetry_json(reading_row(row))
# (json.dumps' default separators, ASCII escapes) with "src":"gateway" added, written here value
# by value with json's own C string encoder and float/int reprs, as json.dumps writes them: the
# uplink sends every reading through it, and json.dumps' Python encoder was its largest single
# cost once the publish path was cheap (benchmarks/mqtt_drain.py: a quarter of the uplink's time;
# written here, 21.5-21.8 -> 19.1-19.2 us of CPU per reading, 12,000 -> 13,650 readings/s).
# tests/gateway/test_mqttfast.py compares the two texts over generated rows; subscribers and the
# takeover (payloads compared byte for byte) see the same bytes as before.
_ASCII_STR = json.encoder.encode_basestring_ascii
_HEADS = tuple((k, json.dumps(k) + ": ") for k in fields.READING_KEYS)
_OWN_END = _OWN_SUFFIX.decode()


def _json_value(v):
    c = v.__class__
    if c is float and v - v == 0.0:     # finite (json.dumps writes NaN and the infinities its own way)
        return float.__repr__(v)
    if c is str:
        return _ASCII_STR(v)
    if c is int:
        return int.__repr__(v)
    return json.dumps(v)


def telemetry_payload(row):
    """fields.telemetry_json(reading_row(row))[:-1] + ',"src":"gateway"}', the same text."""
    parts = []
    for k, head in _HEADS:
        v = row[k]
        if v is not None:
            parts.append(head + _json_value(v))
    for k, v in (("status", row["status"]), ("ts", row["ts"]), ("seq", row["id"])):
        if v is not None:
            parts.append('"%s": %s' % (k, _json_value(v)))
    return "{" + ", ".join(parts) + _OWN_END


# The outbox's order. SQLite has one writer: reading ids commit in order, and a cursor is the
# last id delivered. On PostgreSQL several gateway processes write at once (cluster.py), so id
# 100 may commit after id 101 was read and delivered: a cursor over ids would step over it. There
# a cursor is (xid, id), the transaction that stored the row and its id (migration 0003), and
# the outbox is read in that order only up to the oldest transaction still running
# (pg_snapshot_xmin): every row below that line is committed, and none can appear there later.
# Nothing is skipped, nothing read twice. A key is an id (SQLite) or an (xid, id) pair.
_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_XSELECT_AFTER = ("SELECT * FROM readings WHERE (xid, id) > (?, ?) AND xid < %s ORDER BY xid, id LIMIT ?"
                  % _HORIZON)
_XSELECT_STATION_AFTER = ("SELECT * FROM readings WHERE station = ? AND (xid, id) > (?, ?) AND xid < %s "
                          "ORDER BY xid, id LIMIT ?" % _HORIZON)


def by_xid(db):
    return getattr(db, "dialect", "sqlite") == "postgresql"


def row_key(db_or_pg, row):
    """The outbox key of a readings row: its id, or (xid, id) on PostgreSQL (by_xid)."""
    pg = db_or_pg if isinstance(db_or_pg, bool) else by_xid(db_or_pg)
    return (row["xid"], row["id"]) if pg else row["id"]


def key_id(key):
    """The reading id of an outbox key (for messages and the retention count)."""
    return key[1] if isinstance(key, tuple) else key


def get_cursor(db, uplink, station):
    pg = by_xid(db)
    row = db.execute("SELECT %s FROM outbox WHERE uplink=? AND station=?" % ("last_xid, last_id" if pg else "last_id"),
                     (uplink, station)).fetchone()
    if row is not None:
        return (row[0], row[1]) if pg else row[0]
    # a new uplink starts at the current end: it forwards what arrives from now on
    where = "" if station == "*" else " WHERE station=?"
    args = () if station == "*" else (station,)
    if pg:
        # the end: the last row of a finished transaction (a running one's rows come after it)
        row = db.execute("SELECT xid, id FROM readings" + (where or " WHERE 1=1") + " AND xid < %s ORDER BY xid "
                         "DESC, id DESC LIMIT 1" % _HORIZON, args).fetchone()
        key = (row[0], row[1]) if row else (0, 0)
        db.execute("INSERT INTO outbox (uplink, station, last_xid, last_id) VALUES (?,?,?,?)",
                   (uplink, station) + key)
        return key
    last = db.execute("SELECT COALESCE(MAX(id), 0) FROM readings" + where, args).fetchone()[0]
    db.execute("INSERT INTO outbox (uplink, station, last_id) VALUES (?,?,?)", (uplink, station, last))
    return last


def set_cursor(db, uplink, station, key):
    if isinstance(key, tuple):
        db.execute("UPDATE outbox SET last_xid=?, last_id=? WHERE uplink=? AND station=?",
                   (key[0], key[1], uplink, station))
    else:
        db.execute("UPDATE outbox SET last_id=? WHERE uplink=? AND station=?", (key, uplink, station))


def rows_after(db, key, n, station=None):
    """Up to n readings after outbox key `key` (of one station, or of all), in the outbox's order."""
    if by_xid(db):
        if station is None:
            return db.execute(_XSELECT_AFTER, (key[0], key[1], n)).fetchall()
        return db.execute(_XSELECT_STATION_AFTER, (station, key[0], key[1], n)).fetchall()
    if station is None:
        return db.execute(_SELECT_AFTER, (key, n)).fetchall()
    return db.execute(_SELECT_STATION_AFTER, (station, key, n)).fetchall()


def _set_in_flight(db, key):
    """The MQTT stream's batch in flight ends at outbox key `key` (a cluster: PostgreSQL)."""
    db.execute("UPDATE cluster_leases SET inflight_xid=?, inflight_id=? WHERE work='mqtt'", key)


# the readings after each station's cursor of an uplink, summed in one statement (an index search
# per station, in the database). A query per station from Python held the store's writer thread
# 90 ms per GET /metrics at 10,000 ThingSpeak stations on SQLite (17 ms so: benchmarks/fleet_scale.py),
# and 222 s on PostgreSQL, where that query's (xid, id) > (?, ?) did not use the index (80 ms so)
_DEPTH_PER_STATION = ("SELECT COALESCE(SUM((SELECT COUNT(*) FROM readings r WHERE r.station = o.station AND "
                      "r.id > o.last_id)), 0) FROM outbox o WHERE o.uplink = ? AND o.station <> '*'")
_XDEPTH_PER_STATION = ("SELECT COALESCE(SUM((SELECT COUNT(*) FROM readings r WHERE r.station = o.station AND "
                       "(r.xid, r.id) > (o.last_xid, o.last_id))), 0) FROM outbox o WHERE o.uplink = ? AND "
                       "o.station <> '*'")


def outbox_depth(db, uplink):
    """Readings not yet delivered by `uplink`: after its cursor ('*': one stream of every station's)
    or after each station's cursor."""
    pg = by_xid(db)
    n = int(db.execute(_XDEPTH_PER_STATION if pg else _DEPTH_PER_STATION, (uplink,)).fetchone()[0])
    if pg:
        for last_xid, last_id in db.execute("SELECT last_xid, last_id FROM outbox WHERE uplink=? AND station='*'",
                                            (uplink,)).fetchall():
            n += db.execute("SELECT COUNT(*) FROM readings WHERE (xid, id) > (?, ?)", (last_xid, last_id)).fetchone()[0]
        return n
    for (last_id,) in db.execute("SELECT last_id FROM outbox WHERE uplink=? AND station='*'", (uplink,)).fetchall():
        n += db.execute("SELECT COUNT(*) FROM readings WHERE id > ?", (last_id,)).fetchone()[0]
    return n


def _topic(m):
    """A received message's topic. One that is not UTF-8 (MQTT forbids it; a lax broker may pass it
    on) comes with its bad bytes replaced, so that ingest drops it as naming no station: paho's
    m.topic raises, which escaped the message callback, and paho, left mid-packet, raised it again
    at every read (no later telemetry)."""
    try:
        return m.topic
    except UnicodeDecodeError:
        return bytes(m._topic).decode("utf-8", "replace")


def parse_mqtt_url(url):
    """mqtt[s]://[user:pass@]host[:port][/prefix] -> dict; ValueError says what is wrong."""
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts"):
        raise ValueError("MQTT URL %r: use mqtt://[user:pass@]host:port[/prefix] or mqtts://..." % url)
    if not u.hostname:
        raise ValueError("MQTT URL %r has no host" % url)
    prefix = u.path.strip("/") or "picocharge"
    if "+" in prefix or "#" in prefix:
        raise ValueError("MQTT prefix %r must not contain + or #" % prefix)
    return {"tls": u.scheme == "mqtts", "host": u.hostname,
            "port": u.port or (8883 if u.scheme == "mqtts" else 1883),
            "user": unquote(u.username) if u.username else None,
            "password": unquote(u.password) if u.password else None, "prefix": prefix}


STORE_RETRY_S = 2.0


async def _store_run(store, who, fn, *args):
    """store.run(fn, *args) that waits out a store failure (a full disk: store.error says why)
    instead of ending the uplink's task; the outbox cursor then moves once writing resumes."""
    while True:
        try:
            return await store.run(fn, *args)
        except StoreError as e:
            _ONCE.warning("%s: waiting for the store: %s", who, e, key=("store", who))
            await asyncio.sleep(STORE_RETRY_S)


class Uplink:
    name = "?"

    def __init__(self, gw):
        self.gw = gw
        self.delivered = 0
        self.errors = 0
        self.stopping = False

    def wake(self, station):
        pass

    def state(self):
        """What /healthz says about this uplink."""
        return "connected" if getattr(self, "connected", True) else "disconnected"


class MqttUplink(Uplink):
    name = "mqtt"

    # paced load: readings arrive one by one, a few ms apart. The uplink waits this long after
    # a reading woke it (or after a batch that was not full) before it reads the outbox, so the
    # readings of those ms go out in one batch: one store transaction and one burst of publishes
    # for dozens of readings instead of two transactions and a wake-up per reading. A backlog
    # (a full batch) is read on at once.
    LINGER = 0.05
    PROBE_TIMEOUT = 10.0    # asking the broker for its retained telemetry after a takeover (the stream waits)
    PROBE_ATTEMPTS = 3
    PROBE_CHUNK = 200       # topics per SUBSCRIBE of that probe

    def __init__(self, gw, url, ingest=True, batch=BATCH, linger=LINGER, retain=None, max_batch=MAX_BATCH):
        super().__init__(gw)
        self.linger = linger
        # telemetry published retained: in a cluster (the broker's last message per station is
        # how a new owner of the stream learns what a dead one's batch delivered); alone, a
        # restart resends only what the broker did not acknowledge, and subscribers get no
        # retained copies
        self.retain = gw.cluster is not None if retain is None else retain
        self._unsaved = None     # an acknowledged batch's cursor not stored yet (during a linger)
        self.cfg = parse_mqtt_url(url)
        self.prefix = self.cfg["prefix"]
        self.ingest = ingest
        self.batch = batch      # readings per outbox read: at least batch, at most max_batch
        self.max_batch = max(batch, max_batch)
        self._share = CHUNK_TIME    # how long a chunk of a batch may write (see CHUNK_TIME)
        self.connected = False
        self.client = None
        self.v5 = True          # MQTT 5 (for noLocal), 3.1.1 once a broker refuses it
        self._event = asyncio.Event()
        self._unacked = set()       # message ids of the batch in flight not acknowledged yet
        self._batch_done = asyncio.Event()
        self._task = None
        self.ingested = 0
        self.resent = 0          # readings of a dead owner's batch in flight, sent again (cluster)
        self.skipped = 0         # readings of such a batch the broker had taken: not sent again
        self.dropped = 0         # telemetry messages refused (bad JSON, values, times, size)
        self.refused = 0         # telemetry PUBLISHes the broker answered with a failure reason
        self._ingesting = 0      # telemetry messages waiting for the store
        self._misc = None
        self._loop_thread = None

    @property
    def gateway_topic(self):
        return "%s/gateway/status" % self.prefix

    async def start(self):
        self.loop = asyncio.get_running_loop()
        self._task = self.loop.create_task(self._run())

    async def stop(self):
        self.stopping = True
        c = self.client
        if c is not None and self.connected:
            c.publish(self.gateway_topic, b'{"state":"offline"}', qos=1, retain=True)
            await asyncio.sleep(0.05)
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._unsaved is not None:
            # stopped while lingering after an acknowledged batch: its cursor is stored now,
            # so what the broker acknowledged is not sent again after a restart
            try:
                await self.gw.store.run(set_cursor, self.name, "*", self._unsaved)
            except StoreError as e:
                log.warning("mqtt: the outbox cursor (reading %d) is not stored: %s; its batch will be sent again",
                            key_id(self._unsaved), e)
            self._unsaved = None
        cl = self.gw.cluster
        if cl is not None and cl.holds("mqtt") and not self._unacked:
            # stopped in order, no batch waiting for its acknowledgements: nothing is in doubt
            # (the next owner must not say so)
            try:
                await self.gw.store.run(lambda db: _set_in_flight(db, get_cursor(db, self.name, "*")))
            except StoreError as e:
                log.warning("mqtt: the batch in flight is not cleared (%s): the next owner will say it may repeat", e)
        await self._drop_client()

    def wake(self, station):
        self._event.set()

    # --- connection ----------------------------------------------------------
    # paho runs on the gateway's event loop (its "external event loop" API: loop_read,
    # loop_write, loop_misc driven by add_reader/add_writer), not in a thread of its own.
    # Under load a second thread only gets the GIL every switch interval (5 ms), so the
    # PUBACKs of a busy gateway were read a few hundred times a second, and every publish
    # and every ack crossed threads through a socket pair; on the loop a burst of publishes
    # is written, and a burst of acks read, in one go.
    def _new_client(self):
        if self.v5:
            c = BatchClient(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id(),
                            protocol=mqtt.MQTTv5)
        else:
            c = BatchClient(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id(),
                            protocol=mqtt.MQTTv311, clean_session=True)
        self._credentials(c)
        c.will_set(self.gateway_topic, b'{"state":"offline"}', qos=1, retain=True)
        # no limit in paho: _drain bounds what is in flight (one batch); with a limit, paho
        # walks every unacknowledged message on each PUBACK (quadratic in the batch)
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(0)
        c.on_connect = lambda cl, ud, fl, rc, pr: self._in_loop(self._on_connect, cl, rc)
        c.on_disconnect = lambda cl, ud, fl, rc, pr: self._in_loop(self._on_disconnect, cl, rc)
        # the telemetry's PUBACKs are taken by BatchClient (batch_unacked); paho's own on_publish
        # (the status messages) is not needed
        c.on_batch_done = self._batch_done.set
        c.on_refused = self._on_refused
        c.on_message = lambda cl, ud, m: self._in_loop(self._on_message, _topic(m), m.payload)
        return c

    def _credentials(self, c):
        if self.cfg["user"]:
            c.username_pw_set(self.cfg["user"], self.cfg["password"])
        if self.cfg["tls"]:
            c.tls_set(cert_reqs=ssl.CERT_REQUIRED)

    def _client_id(self):
        # with the pid: two gateway processes of a cluster on one broker must not share one id
        # (the broker would disconnect each when the other connects)
        return "picocharge-gateway-%d-%d" % (os.getpid(), id(self))

    def _in_loop(self, fn, *args):
        # paho calls back from loop_read/loop_write/loop_misc, on the loop; connect() runs
        # in an executor thread, so anything it might call back goes through the loop
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    async def _open(self, c):
        """Connect c (blocking connect in a thread) and hand its socket to the loop."""
        if self.v5:
            await self.loop.run_in_executor(None, lambda: c.connect(self.cfg["host"], self.cfg["port"], 30,
                                                                    clean_start=True))
        else:
            await self.loop.run_in_executor(None, c.connect, self.cfg["host"], self.cfg["port"], 30)
        sock = c.socket()
        if sock is None:
            raise ConnectionError("no socket after connect")
        loop = self.loop
        c.on_socket_close = lambda cl, ud, so: self._unwatch(so)
        c.on_socket_register_write = lambda cl, ud, so: loop.add_writer(so, self._write_ready, cl)
        c.on_socket_unregister_write = lambda cl, ud, so: self._unwatch_write(so)
        loop.add_reader(sock, self._read_ready, c)
        if c.want_write():
            loop.add_writer(sock, self._write_ready, c)
        self._misc = loop.create_task(self._misc_loop(c))

    def _read_ready(self, c):
        c.loop_read()
        sock = c.socket()
        # TLS: records already decrypted into the SSL object do not wake the selector
        while sock is not None and getattr(sock, "pending", None) is not None and sock.pending():
            c.loop_read()
            sock = c.socket()

    def _write_ready(self, c):
        c.loop_write()

    async def _misc_loop(self, c):
        while self.client is c:
            c.loop_misc()   # keepalive pings; drops a connection whose broker went silent
            await asyncio.sleep(1.0)

    def _unwatch_write(self, sock):
        try:
            self.loop.remove_writer(sock)
        except (ValueError, OSError):
            pass

    def _unwatch(self, sock):
        try:
            self.loop.remove_reader(sock)
        except (ValueError, OSError):
            pass
        self._unwatch_write(sock)

    def _on_connect(self, client, rc):
        if client is not self.client:
            return
        if rc.is_failure:
            if self.v5 and rc == "Unsupported protocol version":
                self.v5 = False
                log.warning("mqtt: broker %s:%d does not speak MQTT 5: using 3.1.1 (the gateway then also "
                            "receives its own telemetry through the ingest subscription)",
                            self.cfg["host"], self.cfg["port"])
                return
            log.warning("mqtt: broker %s:%d refused the connection: %s", self.cfg["host"], self.cfg["port"], rc)
            return
        self.connected = True
        log.info("mqtt: connected to %s:%d prefix=%s", self.cfg["host"], self.cfg["port"], self.prefix)
        client.publish(self.gateway_topic, b'{"state":"online"}', qos=1, retain=True)
        for sid in list(self.gw.stations):
            self.publish_status(sid)
        if self.ingest:
            if self.gw.cluster is not None:
                # several gateway processes: a shared subscription, so that each board message is
                # stored by one of them (MQTT 5 forbids noLocal on a shared subscription: the own
                # telemetry that comes back is dropped unparsed, _ingest_message)
                client.subscribe("$share/picocharge-gateway/%s/+/telemetry" % self.prefix, qos=1)
            elif self.v5:
                # noLocal: the broker does not send the gateway's own publications back (one
                # received and dropped message per forwarded reading: a third of the uplink's CPU)
                client.subscribe("%s/+/telemetry" % self.prefix,
                                 options=mqtt.SubscribeOptions(qos=1, noLocal=True))
            else:
                client.subscribe("%s/+/telemetry" % self.prefix, qos=1)
        self._event.set()

    def _on_disconnect(self, client, rc):
        if client is not self.client:
            return
        if self.connected:
            log.warning("mqtt: lost the broker %s:%d (%s); readings wait in the outbox",
                        self.cfg["host"], self.cfg["port"], rc)
        self.connected = False
        self._batch_done.set()      # the batch waiting for its acks: they will not come
        self._event.set()

    def _on_refused(self, mid, reason):
        # MQTT 5: the broker answered a telemetry PUBLISH with a failure reason (not authorized,
        # quota exceeded...): it did not take the message. Counted as acknowledged (the outbox
        # moves on, as with a 3.1.1 broker that drops what it refuses), said here.
        self.refused += 1
        try:
            name = str(mqtt.ReasonCode(mqtt.PacketTypes.PUBACK, identifier=reason))
        except (KeyError, ValueError):
            name = "not a PUBACK reason code"
        _ONCE.warning("mqtt: the broker refused telemetry messages (reason 0x%02x: %s; %d so far; the outbox moves "
                      "on): check its ACL and limits for %s/+/telemetry", reason, name, self.refused, self.prefix,
                      key=("refused", reason))

    async def _drop_client(self):
        c, self.client = self.client, None
        self.connected = False
        self._batch_done.set()
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        if c is not None:
            try:
                if c.socket() is not None:
                    c.disconnect()
                    c.loop_write()  # sends DISCONNECT; paho then closes the socket
            except Exception:
                pass
            sock = c.socket()
            if sock is not None:  # DISCONNECT could not be written: close it here
                self._unwatch(sock)
                sock.close()

    async def _run(self):
        self._loop_thread = threading.get_ident()
        backoff = 0.5
        while not self.stopping:
            self.client = c = self._new_client()
            opened = False
            try:
                await self._open(c)
                opened = True
            except Exception as e:
                log.warning("mqtt: cannot connect to %s:%d: %s", self.cfg["host"], self.cfg["port"], e)
            deadline = time.monotonic() + 10
            while (not self.connected and c.socket() is not None and time.monotonic() < deadline
                   and not self.stopping):
                self._event.clear()
                try:
                    await asyncio.wait_for(self._event.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
            if opened and self.v5 and not self.connected and c.socket() is None and not self.stopping:
                # an MQTT 3.1.1 broker may close the connection on an MQTT 5 CONNECT unanswered
                self.v5 = False
                log.warning("mqtt: broker %s:%d closed the connection on an MQTT 5 CONNECT: trying 3.1.1",
                            self.cfg["host"], self.cfg["port"])
            if self.connected:
                backoff = 0.5
                try:
                    await self._drain()
                except Exception:
                    log.exception("mqtt: uplink failed; reconnecting")
            await self._drop_client()
            if not self.stopping:
                self.errors += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)

    def _advance(self, db, cursor, moved, limit):
        """Move the cursor (when `moved`) and read the next batch (at most `limit` readings)
        after it: one transaction, one commit per batch."""
        if moved:
            set_cursor(db, self.name, "*", cursor)
        rows = rows_after(db, cursor, limit)
        if rows and self.gw.cluster is not None:
            # the batch about to go out, in the same transaction: a process that takes the stream
            # over after this one died knows what may have reached the broker already
            _set_in_flight(db, row_key(db, rows[-1]))
        return rows

    def _in_doubt(self, db, cursor):
        """The readings a previous owner of the stream may have sent (its batch in flight when it
        died, or this process's when it lost the broker), in the outbox's order: a list, maybe empty."""
        row = db.execute("SELECT inflight_xid, inflight_id FROM cluster_leases WHERE work='mqtt'").fetchone()
        if row is None or row[0] is None:
            return []
        inflight = (row[0], row[1])
        if not inflight > cursor:
            return []
        return [r for r in rows_after(db, cursor, self.max_batch) if row_key(db, r) <= inflight]

    async def _at_broker(self, doubt):
        """The outbox keys of the readings in `doubt` the broker took (see the module docstring,
        "Exactly once across a takeover"), and what went wrong when the broker could not be asked."""
        if not self.retain:
            return set(), "telemetry is not retained"
        pg = self.gw.store.dialect == "postgresql"
        mine = {}       # station -> its rows in doubt, in the order they were published
        for r in doubt:
            mine.setdefault(r["station"], []).append(r)
        topics = {fields.telemetry_topic(self.prefix, sid): sid for sid in mine}
        retained, why = None, None
        for attempt in range(1, self.PROBE_ATTEMPTS + 1):
            t0 = time.monotonic()
            try:
                retained = await self._retained(list(topics))
                log.info("mqtt: the broker's retained telemetry of %d stations read in %.2f s (attempt %d)",
                         len(topics), time.monotonic() - t0, attempt)
                break
            except Exception as e:      # noqa: B902 - refused, timed out, lost: asked again, then every row sent
                why = "%s: %s" % (type(e).__name__, e)
                log.warning("mqtt: could not read the broker's retained telemetry (attempt %d of %d, %.1f s): %s",
                            attempt, self.PROBE_ATTEMPTS, time.monotonic() - t0, why)
        if retained is None:
            return set(), why
        taken = set()
        for topic, payload in retained.items():
            rows = mine.get(topics.get(topic), ())
            for k in range(len(rows) - 1, -1, -1):
                if self.payload(rows[k]).encode() == payload:
                    # the broker's last message for this station: it and every earlier one of
                    # the batch arrived (one client's QoS 1 messages on a topic stay in order)
                    taken.update(row_key(pg, r) for r in rows[:k + 1])
                    break
        return taken, None

    async def _retained(self, topics):
        """{topic: payload} of the retained messages on `topics`, read by a client of its own, run
        on the event loop as the stream's client is (paho's external loop: a thread of paho's own
        uses select(), which fails on a descriptor above 1,023, the common case in a process with
        a thousand stations connected). A retained message comes after the SUBACK; a marker
        published after the SUBACK comes after them, so when it is back every one of them is."""
        cid = "picocharge-probe-%d-%s" % (os.getpid(), os.urandom(4).hex())
        if self.v5:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        else:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311,
                            clean_session=True)
        self._credentials(c)
        marker = "%s/gateway/probe/%s" % (self.prefix, cid)
        got = {}
        st = {"rc": None, "subacks": set(), "marks": 0, "closed": False}
        changed = asyncio.Event()

        def on_connect(cl, ud, fl, rc, pr):
            st["rc"] = rc
            changed.set()

        def on_subscribe(cl, ud, mid, rcs, pr):
            st["subacks"].add(mid)
            changed.set()

        def on_message(cl, ud, m):
            if m.topic == marker:
                st["marks"] += 1
                changed.set()
            elif m.retain and len(m.payload) <= MAX_TELEMETRY_BYTES:
                got[m.topic] = m.payload

        def on_disconnect(cl, ud, fl, rc, pr):
            st["closed"] = True
            changed.set()

        c.on_connect, c.on_subscribe = on_connect, on_subscribe
        c.on_message, c.on_disconnect = on_message, on_disconnect
        loop = self.loop
        end = loop.time() + self.PROBE_TIMEOUT

        async def wait(what, pred):
            while not pred():
                if st["closed"]:
                    raise ConnectionError("the broker closed the connection before the %s" % what)
                left = end - loop.time()
                if left <= 0:
                    raise TimeoutError("no %s from %s:%d within %.0f s" % (what, self.cfg["host"], self.cfg["port"],
                                                                        self.PROBE_TIMEOUT))
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), left)
                except asyncio.TimeoutError:
                    pass

        await loop.run_in_executor(None, c.connect, self.cfg["host"], self.cfg["port"], 30)
        sock = c.socket()
        if sock is None:
            raise ConnectionError("no socket after connect")
        c.on_socket_register_write = lambda cl, ud, so: loop.add_writer(so, cl.loop_write)
        c.on_socket_unregister_write = lambda cl, ud, so: self._unwatch_write(so)
        c.on_socket_close = lambda cl, ud, so: self._unwatch(so)
        loop.add_reader(sock, c.loop_read)
        if c.want_write():
            loop.add_writer(sock, c.loop_write)
        try:
            await wait("CONNACK", lambda: st["rc"] is not None)
            if st["rc"].is_failure:
                raise ConnectionError("the broker refused the connection: %s" % st["rc"])
            # a few hundred topics per SUBSCRIBE: a broker queues a client's messages up to a limit
            # (mosquitto: max_queued_messages, 1000) and drops the rest
            _rc, mid = c.subscribe(marker, qos=1)
            await wait("SUBACK", lambda: mid in st["subacks"])
            for n, k in enumerate(range(0, len(topics), self.PROBE_CHUNK), 1):
                _rc, mid = c.subscribe([(t, 1) for t in topics[k:k + self.PROBE_CHUNK]])
                await wait("SUBACK", lambda: mid in st["subacks"])
                c.publish(marker, b"", qos=1)
                await wait("marker message", lambda: st["marks"] >= n)
            return dict(got)
        finally:
            try:
                if c.socket() is not None:
                    c.disconnect()
                    c.loop_write()  # sends DISCONNECT; paho then closes the socket
            except Exception:   # noqa: B902 - closing a probe that failed: nothing more to do
                pass
            so = c.socket()
            if so is not None:
                self._unwatch(so)
                so.close()
            self._unwatch(sock)

    def _mine(self):
        """Whether this process forwards the readings now: always alone, with the MQTT lease in a
        cluster (cluster.py: one process at a time forwards the stream)."""
        cl = self.gw.cluster
        return cl is None or cl.holds("mqtt")

    async def _drain(self):
        while self.connected and not self.stopping:
            if not self._mine():
                self._event.clear()
                try:
                    await asyncio.wait_for(self._event.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            if not await self._drain_mine():
                return

    async def _drain_mine(self):
        """Forward until the broker is lost (False) or the lease is (True)."""
        store = self.gw.store
        cursor = await _store_run(store, "mqtt", get_cursor, self.name, "*")
        skip = ()
        if self.gw.cluster is not None:
            doubt = await _store_run(store, "mqtt", self._in_doubt, cursor)
            if doubt:
                skip, why = await self._at_broker(doubt)
                again = len(doubt) - len(skip)
                self.resent += again
                self.skipped += len(skip)
                seqs = [r["id"] for r in doubt]
                if why is None:
                    log.warning("mqtt: taking the stream up with a batch in flight from before (a process that died, "
                                "or the broker lost): %d readings (seq %d..%d); the broker's retained telemetry "
                                "shows %d of them arrived, the other %d are sent now", len(doubt), min(seqs),
                                max(seqs), len(skip), again)
                else:
                    log.warning("mqtt: taking the stream up with a batch in flight from before (a process that died, "
                                "or the broker lost): %d readings (seq %d..%d) may reach the broker a second time: "
                                "the broker could not be asked what it took (%s)", len(doubt), min(seqs), max(seqs),
                                why)
        self._event.clear()     # before every read of the outbox: a reading stored after it wakes us
        limit = self.batch
        rows = await _store_run(store, "mqtt", self._advance, cursor, False, limit)
        while self.connected and not self.stopping:
            if not self._mine():
                return True
            if not rows:
                try:
                    await asyncio.wait_for(self._event.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                if self._event.is_set() and self.linger > 0:
                    await asyncio.sleep(self.linger)    # the readings of the next few ms come along
                self._event.clear()
                limit = self.batch
                rows = await _store_run(store, "mqtt", self._advance, cursor, False, limit)
                continue
            # the batch's packet ids not yet acknowledged: the client takes them out as their
            # PUBACKs come and wakes this task when none is left (mqttfast.BatchClient)
            c = self.client
            c.batch_unacked = self._unacked = unacked = set()
            sent = []       # (outbox key, packet id; None: at the broker already), in the outbox's order
            topic, payload, prefix = fields.telemetry_topic, self.payload, self.prefix
            pg = self.gw.store.dialect == "postgresql"
            retain = self.retain
            k, end = 0, len(rows)
            while k < end:
                if k:
                    t = time.monotonic()
                    await asyncio.sleep(0)  # let the stations in; they take one turn of the loop
                    self._share = min(max(time.monotonic() - t, CHUNK_TIME), CHUNK_TIME_MAX)
                    if self.client is not c or not self.connected:
                        break
                msgs, first = [], len(sent)
                until = time.monotonic() + self._share
                while k < end:
                    for row in rows[k:k + _CHUNK_STEP]:
                        key = row_key(pg, row)
                        if skip and key in skip:
                            sent.append((key, None))     # at the broker already: as acknowledged
                            continue
                        sent.append((key, 0))
                        msgs.append((topic(prefix, row["station"]), payload(row).encode()))
                    k += _CHUNK_STEP
                    if time.monotonic() >= until:
                        break
                if not msgs:
                    continue
                mids = c.publish_batch(msgs, retain)
                if mids is None:    # the connection is gone: from here on nothing was sent
                    del sent[first:]
                    break
                it = iter(mids)
                for i in range(first, len(sent)):
                    if sent[i][1] is not None:
                        sent[i] = (sent[i][0], next(it))
            deadline = time.monotonic() + 30
            while unacked and self.connected:
                self._batch_done.clear()
                try:
                    await asyncio.wait_for(self._batch_done.wait(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
            # the cursor moves over the acknowledged prefix only, at once (connected or not: what
            # was acknowledged is not sent again), in the transaction that reads the next batch
            acked, n, new = cursor, 0, 0
            for rid, mid in sent:
                if mid in unacked:
                    break
                acked, n, new = rid, n + 1, new + (mid is not None)
            self._unacked = set()
            skip = ()
            cursor = acked
            self.delivered += new
            complete = bool(sent) and acked == sent[-1][0]
            full = len(rows) >= limit
            # the next read: room for twice what this one found (a backlog is read in growing batches)
            limit = min(max(2 * len(rows), self.batch), self.max_batch)
            if complete and not full and self.linger > 0:
                # not a backlog: linger, then store the cursor and read in one transaction
                # (stop() stores it if the gateway stops meanwhile)
                self._unsaved = cursor if n else None
                await asyncio.sleep(self.linger)
            self._event.clear()
            rows = await _store_run(store, "mqtt", self._advance, cursor, n > 0, limit)
            self._unsaved = None
            if not complete:
                return False    # lost the broker mid-batch: reconnect, resend from the cursor
        return not self.stopping

    @staticmethod
    def payload(row):
        # the gateway's own publications carry "src":"gateway" (ingest ignores them)
        return telemetry_payload(row)

    def publish_status(self, sid):
        if not self.connected or self.client is None:
            return
        st = self.gw.stations.get(sid)
        topic = fields.status_topic(self.prefix, sid)
        if st is None:      # removed: an empty retained message deletes the retained status
            self.client.publish(topic, b"", qos=1, retain=True)
            return
        # connected to any process of a cluster: the process whose older link it closed must not
        # publish "offline" over the "online" of the one it connected to
        state = "online" if sid in self.gw.connected else "offline"
        self.client.publish(topic, fields.status_json(state, st.get("status") or "Unknown"), qos=1, retain=True)

    # --- ingest ---------------------------------------------------------------
    def _on_message(self, topic, payload):
        # paho calls this from loop_read: an exception here would leave paho mid-packet and
        # be raised again on every read (no later telemetry, the same traceback hundreds of
        # times a second). Nothing a publisher sends may escape: every refusal is a drop,
        # counted and logged once per kind of message.
        try:
            self._ingest_message(topic, payload)
        except Exception as e:      # a bug of ours, not the publisher's: still never escapes
            self.dropped += 1
            _ONCE.exception("mqtt ingest: a message on %s was dropped: %s: %s", topic[:120], type(e).__name__,
                            str(e)[:200], key=("unexpected", topic, type(e).__name__))

    def _ingest_message(self, topic, payload):
        if payload.endswith(_OWN_SUFFIX):
            # our own telemetry, back through the ingest subscription (one per forwarded
            # reading): a JSON object whose last member is "src":"gateway" is ignored below
            # anyway, so do not parse it
            return
        parts = topic.split("/")
        if len(parts) < 3 or parts[-1] != "telemetry":
            return
        sid = parts[-2]
        why = fields.station_id_error(sid)      # the one rule of every door (firmware/fields.py)
        if why:
            return self._drop(sid.encode("unicode_escape").decode()[:64], "telemetry on a topic whose " + why)
        if len(payload) > MAX_TELEMETRY_BYTES:
            return self._drop(sid, "a payload of %d bytes (at most %d)" % (len(payload), MAX_TELEMETRY_BYTES))
        try:
            d = json.loads(payload)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
        except RecursionError:
            return self._drop(sid, "a payload nested too deeply")
        except ValueError as e:     # UnicodeDecodeError too: not UTF-8
            return self._drop(sid, "a payload that is not a JSON object (%s)" % str(e)[:120])
        if d.get("src") == "gateway":
            return
        if sid not in self.gw.stations and self.gw.settings.auth != "none":
            _ONCE.warning("mqtt ingest: station=%s is not registered; its telemetry is ignored", sid,
                          key=("unregistered", sid))
            return
        try:
            row = reading_from_dict(d)
        except ValueError as e:
            return self._drop(sid, "bad telemetry: %s" % e)
        if self._ingesting >= MAX_INGEST_INFLIGHT:
            return self._drop(sid, "telemetry faster than the store takes it (%d waiting)" % self._ingesting)
        self._ingesting += 1
        self.loop.create_task(self._ingest(sid, row))

    def _drop(self, sid, why):
        self.dropped += 1
        # one line per kind of refusal, whichever station and value: numbers and quoted values
        # do not make a message new
        _ONCE.warning("mqtt ingest: station=%s sent %s; dropped", sid[:64], why,
                      key=("drop", _VARYING.sub("#", why)[:100]))

    async def _ingest(self, sid, row):
        try:
            await self._store_telemetry(sid, row)
        finally:
            self._ingesting -= 1

    async def _store_telemetry(self, sid, row):
        try:
            if sid not in self.gw.stations:
                try:
                    await self.gw.register(sid, None, state="accepted")
                except KeyError:    # registered meanwhile, by its message before this one (store.add_station)
                    pass
            await self.gw.store_readings(sid, [row], "mqtt")
        except Exception as e:  # the store cannot write now (store.error says why)
            self.dropped += 1
            _ONCE.warning("mqtt ingest: station=%s telemetry not stored: %s", sid[:64], e,
                          key=("store", type(e).__name__, str(e)))
            return
        self.gw.metrics.ingest["mqtt"] += 1


_REACHED = "cannot reach"     # in the reason of a write that never got an answer
# how long the newest second's readings wait for more of the same second (at most the interval)
SETTLE_S = 1.0
# created_at seconds remembered per station as written to its channel (a few hours at 1 s)
_WRITTEN_KEPT = 20000


class _Seconds:
    """The created_at values written to one channel lately (a bounded, ordered set)."""

    def __init__(self, kept=_WRITTEN_KEPT):
        self.kept = kept
        self._d = {}

    def __contains__(self, ts):
        return ts in self._d

    def add(self, ts):
        d = self._d
        d[ts] = None
        if len(d) > self.kept:
            del d[next(iter(d))]


def merge_seconds(rows, written=()):
    """ThingSpeak entries for outbox rows: one per created_at second, each field holding the
    latest value (in id order) of that second. Returns (entries, late, merged, superseded):
    late = rows whose second is in `written` (not sent), merged = rows that share an entry
    with a later row, superseded = field values a later row of the same second replaced."""
    entries = {}
    late = superseded = 0
    for r in rows:
        ts = r["ts"]
        if ts in written:
            late += 1
            continue
        e = entries.get(ts)
        if e is None:
            entries[ts] = e = {"created_at": ts}
        for k, v in fields.thingspeak_fields(reading_row(r)):
            if e.get(k, v) != v:
                superseded += 1
            e[k] = v
    return list(entries.values()), late, len(rows) - late - len(entries), superseded

# urllib3 logs the request line at DEBUG ("POST /update?api_key=...&field1=..." : the thingspeak
# package sends a single write's fields, write key included, in the query string) and a few
# URLs at WARNING (a retry, headers it cannot parse). Its loggers are held at WARNING whatever
# the gateway's level, and what they still log has every key value masked.
_URLLIB3_LOGGERS = ("urllib3", "urllib3.connection", "urllib3.connectionpool", "urllib3.poolmanager",
                    "urllib3.util.retry", "urllib3.response")
_KEY_IN_URL = re.compile(r"((?:api_key|key|write_api_key)=)[^&\s'\"]+", re.I)


class _MaskKeys(logging.Filter):
    """Masks api_key=... (and key=, write_api_key=) in a record's message."""

    def filter(self, record):
        msg = record.getMessage()
        masked = _KEY_IN_URL.sub(r"\1***", msg)
        if masked != msg:
            record.msg, record.args = masked, None
        return True


_MASK_KEYS = _MaskKeys()


def quiet_urllib3():
    """urllib3 at WARNING at least, and key values masked in whatever it logs (idempotent)."""
    top = logging.getLogger("urllib3")
    if top.level < logging.WARNING:     # NOTSET too: it would follow the root down to DEBUG
        top.setLevel(logging.WARNING)
    for name in _URLLIB3_LOGGERS:
        lg = logging.getLogger(name)
        if _MASK_KEYS not in lg.filters:
            lg.addFilter(_MASK_KEYS)


class ThingSpeakUplink(Uplink):
    name = "thingspeak"

    def __init__(self, gw, url, interval=15.0, bulk_limit=960, settle=None):
        super().__init__(gw)
        self.url = url.rstrip("/")
        self.interval = float(interval)
        self.bulk_limit = int(bulk_limit)
        self.settle = min(SETTLE_S, self.interval) if settle is None else float(settle)
        self.workers = {}
        self.events = {}
        self.refused = 0
        self.merged = 0         # readings that shared their channel entry with a later one (same second)
        self.superseded = 0     # field values replaced by a later reading of the same second
        self.late = 0           # readings not sent: the channel already held an entry at their second
        self._woken = {}        # station -> monotonic time of its latest stored reading
        self._written = {}      # station -> _Seconds written to its channel
        self.failing = {}       # station -> (reachable?, why) of its last write, while it fails

    async def start(self):
        self.loop = asyncio.get_running_loop()
        quiet_urllib3()     # the write key of a single write is in its URL
        self.http = requests.Session()
        for sid, st in self.gw.stations.items():
            if st.get("ts_channel") and st.get("ts_key"):
                self.add_station(sid)

    def add_station(self, sid):
        if sid in self.workers:
            return
        cl = self.gw.cluster
        if cl is not None and not cl.owns_station(sid):
            return      # another process of the cluster holds its shard's lease (cluster.py)
        self.events[sid] = asyncio.Event()
        self.events[sid].set()
        self.workers[sid] = self.loop.create_task(self._worker(sid))

    async def remove_station(self, sid):
        """Stop forwarding a station (its ThingSpeak channel was cleared or changed); a send
        in flight is abandoned: the next worker finds it again through the inflight cursor."""
        t = self.workers.pop(sid, None)
        self.events.pop(sid, None)
        self.failing.pop(sid, None)
        self._written.pop(sid, None)    # another channel, maybe: it holds none of these
        if t is not None:
            t.cancel()
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    def state(self):
        """connected: no station's last write failed; disconnected: a station's last write got
        no answer from ThingSpeak; failing: ThingSpeak answered each failed write, but did not
        store it (a wrong write key, a rate limit, an HTTP error)."""
        if not self.failing:
            return "connected"
        return "failing" if all(ok for ok, _w in self.failing.values()) else "disconnected"

    async def stop(self):
        self.stopping = True
        for t in self.workers.values():
            t.cancel()
        for t in self.workers.values():
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    def wake(self, station):
        ev = self.events.get(station)
        if ev is not None:
            self._woken[station] = time.monotonic()
            ev.set()

    def _whole_seconds(self, sid, rows):
        """(rows to send now, how long to wait when none): a prefix of rows that ends with a
        whole second. rows holds up to bulk_limit + 1 rows: the extra one says whether the
        last second goes on past the bulk limit. The newest second in the outbox waits while
        readings still arrive (less than `settle` since the last)."""
        more = len(rows) > self.bulk_limit
        wait = 0.0
        if more:
            nxt = rows[self.bulk_limit]["ts"]
            rows = rows[:self.bulk_limit]
            open_tail = rows[-1]["ts"] == nxt
        else:
            wait = self._woken.get(sid, 0.0) + self.settle - time.monotonic()
            open_tail = wait > 0
        if not open_tail:
            return rows, 0.0
        last = rows[-1]["ts"]
        cut = next(i for i, r in enumerate(rows) if r["ts"] == last)
        if cut == 0 and more:
            return rows, 0.0   # a bulk limit's worth in one second: send it (what follows is late)
        return rows[:cut], max(wait, 0.01)

    async def _worker(self, sid):
        store = self.gw.store
        st = self.gw.stations[sid]
        cid, key = st["ts_channel"], st["ts_key"]
        pg = store.dialect == "postgresql"
        cursor = await _store_run(store, "thingspeak", get_cursor, self.name, sid)
        worked_before = await _store_run(store, "thingspeak", lambda db: db.execute(
            "SELECT 1 FROM outbox WHERE uplink=? AND station=?", (self.name + "-inflight", sid)).fetchone())
        inflight = await _store_run(store, "thingspeak", get_cursor, self.name + "-inflight", sid)
        # A worker ran for this station before (an earlier gateway, or before its channel was
        # changed): the channel may have taken a write less than one interval ago, and would
        # refuse one now. The first write waits one interval, as if one had just been made:
        # at most one interval late, and nothing more to keep in the database.
        last_write = time.monotonic() if worked_before else None
        fails = 0
        skip = set()
        unsure = None   # readings up to this key may be in the channel already
        if inflight > cursor:
            # a send was in flight when the gateway stopped: ask the channel what it stored
            skip, why = await self.loop.run_in_executor(None, self._stored_created_at, cid,
                                                        st.get("ts_read_key"))
            if skip is None:
                log.warning("thingspeak: station=%s channel=%s: cannot read the channel back (%s); re-sending "
                            "readings %d..%d (may duplicate)", sid, cid, why, key_id(cursor) + 1,
                            key_id(inflight))
                skip = set()
                # those go by bulk write: the channel drops an entry it holds already and answers
                # 202, where a single write of it may be answered 0 (not stored) again and again
                unsure = inflight
        written = self._written.setdefault(sid, _Seconds())
        for ts in skip:         # the channel's own word on the seconds it holds
            written.add(ts)
        ev = self.events[sid]
        while not self.stopping:
            ev.clear()
            rows = await _store_run(store, "thingspeak", rows_after, cursor, self.bulk_limit + 1, sid)
            if skip:
                keep = [r for r in rows if not (row_key(pg, r) <= inflight and r["ts"] in skip)]
                if len(keep) != len(rows):
                    log.info("thingspeak: station=%s %d readings were already stored before the restart",
                             sid, len(rows) - len(keep))
                    if not keep:
                        cursor = row_key(pg, rows[-1])
                    else:   # up to the row before the first one kept
                        first = rows.index(keep[0])
                        cursor = row_key(pg, rows[first - 1]) if first else cursor
                    await _store_run(store, "thingspeak", set_cursor, self.name, sid, cursor)
                rows = keep
                skip = set()
            if not rows:
                await ev.wait()
                continue
            rows, settle = self._whole_seconds(sid, rows)
            if not rows:
                ev.clear()
                try:
                    await asyncio.wait_for(ev.wait(), settle)
                except asyncio.TimeoutError:
                    pass
                continue
            entries, late, merged, superseded = merge_seconds(rows, written)
            first_late = next((r["ts"] for r in rows if r["ts"] in written), None) if late else None
            if entries and last_write is not None:
                wait = last_write + self.interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue        # fetch again: more may have queued up meanwhile (one bulk write)
            if entries:
                await _store_run(store, "thingspeak", set_cursor, self.name + "-inflight", sid,
                                 row_key(pg, rows[-1]))
                ok, why = await self.loop.run_in_executor(None, self._send, cid, key, entries,
                                                          unsure is not None and row_key(pg, rows[0]) <= unsure)
                last_write = time.monotonic()
            else:
                ok = True       # every one of them late: nothing to write
            if ok:
                self.failing.pop(sid, None)
                fails = 0
                cursor = row_key(pg, rows[-1])
                await _store_run(store, "thingspeak", set_cursor, self.name, sid, cursor)
                for e in entries:
                    written.add(e["created_at"])
                self.delivered += len(rows) - late
                self.merged += merged
                self.superseded += superseded
                if late:
                    self.late += late
                    _ONCE.warning("thingspeak: station=%s channel=%s: %d readings not sent: the channel already "
                                  "holds an entry at their second (created_at %s...)", sid, cid, late,
                                  first_late, key=("late", sid))
            else:
                fails += 1
                self.errors += 1
                self.failing[sid] = (_REACHED not in why, why)
                delay = min(self.interval * (2 ** min(fails, 6)), 300.0)
                log.warning("thingspeak: station=%s channel=%s: %d readings not stored (%s); retry in %.1f s",
                            sid, cid, len(rows), why, delay)
                await asyncio.sleep(delay)

    def _send(self, cid, key, entries, bulk=False):
        """(stored?, why) for one write: /update for one entry, bulk_update.json for more (or bulk)."""
        try:
            if len(entries) == 1 and not bulk:
                ch = thingspeak.Channel(cid, api_key=key, fmt="txt", timeout=15, server_url=self.url)
                out = ch.update(entries[0])
                if str(out).strip() in ("0", ""):
                    self.refused += 1
                    return False, "ThingSpeak answered 0: rate limit or bad key"
                return True, None
            body = {"write_api_key": key, "updates": entries}
            r = self.http.post("%s/channels/%s/bulk_update.json" % (self.url, cid), json=body, timeout=30)
            if r.status_code in (200, 202):
                return True, None
            if r.status_code == 429:
                self.refused += 1
                return False, "HTTP 429: channel interval not passed"
            return False, "HTTP %d %s" % (r.status_code, r.text[:120])
        except requests.HTTPError as e:
            return False, "HTTP %s" % (e.response.status_code if e.response is not None else "error")
        except requests.RequestException as e:
            return False, "%s (%s %s)" % (type(e).__name__, _REACHED, self.url)

    def _stored_created_at(self, cid, read_key=None):
        """(created_at of the channel's last 8000 entries, None) or (None, why not). A private
        channel (ThingSpeak's default) is read with its Read API key; without one ThingSpeak
        answers HTTP 400 with -1."""
        params = {"results": 8000}
        if read_key:
            params["api_key"] = read_key
        hint = ("a private channel is read with its Read API key: give the station thingspeak_read_key "
                "(PUT /api/stations/<id>/thingspeak) or make the channel public")
        try:
            r = self.http.get("%s/channels/%s/feeds.json" % (self.url, cid), params=params, timeout=30)
            if r.status_code != 200:
                return None, "HTTP %d %s; %s" % (r.status_code, r.text[:40].strip(),
                                                 "check the read key" if read_key else hint)
            ans = r.json()
            if not isinstance(ans, dict) or not isinstance(ans.get("feeds") or [], list):
                return None, "ThingSpeak answered %s, not the channel's feed; %s" % (
                    r.text[:40].strip(), "check the read key" if read_key else hint)
            return {f.get("created_at") for f in ans.get("feeds") or () if isinstance(f, dict)}, None
        except ValueError:
            return None, "the answer is not JSON"
        except requests.RequestException as e:
            return None, "%s (%s %s)" % (type(e).__name__, _REACHED, self.url)
