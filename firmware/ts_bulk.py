# ThingSpeak's backlog on flash sent: one reading to /update, or a bulk write
# (bulk_update.json) streamed from flash: see thingspeak_upload.py, which imports this only
# while it has a backlog to send.
import flashq
import fields
import httpc
from thingspeak_upload import _L, fmt, parse_answer, update_body

_BULK_MAX = 960   # entries per bulk write on a free licence (MathWorks' bulk-write page)
_CHUNK = 16       # records read from flash at a time while streaming a body


def bulk_entry(reading, created_at):
    """One entry of a bulk write's "updates", JSON bytes."""
    out = ['{"created_at":"%s"' % created_at]
    for name, v in fields.thingspeak_fields(reading):
        out.append('"%s":%s' % (name, fmt(v)))
    if reading.get("fault"):
        out.append('"status":"%s"' % reading["fault"])
    return (",".join(out) + "}").encode()


class Bulk:
    """A bulk write's body, streamed from the backlog: records after `after` up to `last`.
    Built twice from flash (its length, then the bytes), the same both times: the backlog
    holds still (q.hold) while it is sent, and created_at is derived from the records alone."""

    def __init__(self, q, key, last_t):
        self.q = q
        self.head = ('{"write_api_key":"%s","updates":[' % key).encode()
        self.last_t = last_t   # the second of the entry sent before this write
        self.n = 0
        self.last = q.acked
        self.length = len(self.head) + 2
        for e in self._entries(None):
            self.length += len(e) + (1 if self.n else 0)
            self.n += 1
            self.last = self.t_seq[1]

    def _entries(self, upto):
        """(bytes of each entry), oldest first; self.t_seq = (its second, its seq)."""
        after = self.q.acked
        t_prev = self.last_t
        n = 0
        while n < _BULK_MAX:
            rs = self.q.read(after, _CHUNK)
            if not rs:
                return
            for seq, t, p in rs:
                if (upto is not None and seq > upto) or n >= _BULK_MAX:
                    return
                after = seq
                if t <= t_prev:
                    t = t_prev + 1
                t_prev = t
                n += 1
                self.t_seq = (t, seq)
                try:
                    r = flashq.unpack_reading(p)
                except ValueError:
                    r = {}  # not a reading (flash damage): an entry with no fields
                yield bulk_entry(r, flashq.iso_s(t))

    async def write_to(self, w, end):
        await httpc.send(w, self.head, end)
        first = True
        for e in self._entries(self.last):
            await httpc.send(w, e if first else b"," + e, end)
            first = False
        await httpc.send(w, b"]}", end)


async def send(ctx, q, url, last_t, tls):
    """The oldest of backlog q: in bulk (more than one waiting, channel_id set), else one;
    the backlog closed once empty. The second of the last one sent (last_t if none was)."""
    st = ctx.state
    if not len(q):
        _L.info("backlog sent (%d readings thinned, %d dropped)", q.thinned, q.dropped)
        q.close(ctx, "thingspeak")
        return last_t
    t = await _send(q, ctx.cfg["thingspeak"], url, last_t, tls, st)
    st.counters["ts_thinned"] = q.thinned
    st.counters["ts_dropped"] = q.dropped
    st.counters["ts_waiting"] = len(q)
    return t


async def _send(q, cfg, url, last_t, tls, st):
    if len(q) > 1 and cfg["channel_id"]:
        return await bulk(q, cfg, url, last_t, tls, st)
    rs = q.read(q.acked, 1)
    if not rs:
        q.count = 0
        return last_t
    seq, t, p = rs[0]
    del rs
    if len(q) > 1 and not getattr(q, "said", 0):   # said once a backlog
        _L.warn("%d readings waiting: set thingspeak.channel_id to send them in bulk "
                "(one per %ds until then)", len(q), cfg["min_interval_s"])
        q.said = 1
    if t <= last_t:
        t = last_t + 1
    try:
        body = update_body(cfg["write_key"], flashq.unpack_reading(p), flashq.iso_s(t))
    except ValueError as e:
        _L.error("skipping backlog record #%d: %s", seq, e)
        q.ack(seq)
        return last_t
    # only the body is held while the request waits on the network (the record and its
    # reading dict are garbage by then: heap for the other tasks meanwhile)
    del p
    status, ans = await httpc.request("POST", url + "/update", body, tls=tls)
    del body
    entry = parse_answer(status, ans)
    q.ack(seq)
    st.counters["ts_sent"] += 1
    _L.info("stored entry %d (backlog #%d)", entry, seq)
    return t


async def bulk(q, cfg, url, last_t, tls, st):
    """One bulk write of the backlog (up to _BULK_MAX readings), acknowledged in it once taken,
    counted and said; the second of the last one sent (last_t when nothing was left)."""
    q.hold = True  # no thinning or dropping while the body is built twice and sent
    try:
        body = Bulk(q, cfg["write_key"], last_t)
        if not body.n:
            q.count = 0
            return last_t
        status, ans = await httpc.request(
            "POST", "%s/channels/%d/bulk_update.json" % (url, cfg["channel_id"]), body,
            ctype="application/json", timeout_s=60, tls=tls)
        parse(status, ans)
    finally:
        q.hold = False
    q.ack(body.last, body.n)
    st.counters["ts_sent"] += body.n
    _L.info("bulk write of %d readings taken (%d waiting)", body.n, len(q))
    return body.t_seq[0]


def parse(status, body):
    """A bulk write was taken (202, or 200, with "success" true); OSError with the reason if not."""
    if status not in (200, 202):
        raise OSError("bulk write: HTTP %d %s" % (status, body[:80]))
    if b'"success":true' not in body.replace(b" ", b""):
        raise OSError("bulk write not taken: %r" % body[:80])
