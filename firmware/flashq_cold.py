# The parts of flashq needed only at boot (finding the files and seqs on flash) and past the
# byte budget (thinning, dropping): imported for that and dropped from sys.modules after, so
# a running board does not hold their bytecode (flashq.FlashQ.load / .append).
import os

from compat import ticks_ms
from flashq import SEG_BYTES, _HDR, _L, _parse


_DIRS = {"thingspeak": ("ts_backlog", "min_interval_s"), "mqtt": ("mqtt_backlog", "interval_s")}


def open_one(ctx, name, t=0, r=None):
    """ctx.backlogs[name]: the backlog of uplink `name` (thingspeak, mqtt), found on flash if
    not open; r, a reading taken at t that the uplink could not send, appended (sampler.backlog)."""
    import flashq

    q = ctx.backlogs.get(name)
    if q is None:
        q = _open(ctx, name)
    if r is not None:
        q.append(t, flashq.pack_reading(r))
    return q


def _open(ctx, name):
    import flashq

    c = ctx.cfg
    bl = c["backlog"]
    d, every = _DIRS[name]
    q = flashq.FlashQ(d, bl["flash_kb"] * 1024, bl["thin_s"])
    load(q)
    q.every_ms = c[name][every] * 1000
    q.taken_ms = ticks_ms()   # the reading of now is the uplink's: the sample task takes the next
    ctx.backlogs[name] = q
    return q


def open_backlogs(ctx):
    """At boot (app_tasks, before the tasks' modules are imported): the backlogs of the uplinks
    that are on and have readings waiting on flash from before the restart stay open; the
    others are opened only when their uplink cannot send, and flashq is not kept for them."""
    import sys

    for name in _DIRS:
        if ctx.cfg[name]["enabled"]:
            q = _open(ctx, name)
            q.taken_ms = None
            if q.count:
                _L.info("%s: %d readings waiting on flash from before the restart", q.dir, q.count)
            else:
                del ctx.backlogs[name]
    if not ctx.backlogs:
        sys.modules.pop("flashq", None)


def load(q):
    """flashq.FlashQ.load: the files and seqs on flash, a torn last record noted."""
    try:
        os.mkdir(q.dir)
    except OSError:
        pass
    t, qs = [], []
    for name in os.listdir(q.dir):
        try:
            if name.endswith(".t"):
                t.append(int(name[:-2]))
            elif name.endswith(".q"):
                qs.append(int(name[:-2]))
        except ValueError:
            pass
    try:
        with open(q.dir + "/head", "rb") as f:
            q.acked = int(f.read())
    except (OSError, ValueError):
        q.acked = 0
    if t:
        q.tlo, q.thi = min(t), max(t)
    if qs:
        q.qlo, q.qhi = min(qs), max(qs)
    del t, qs
    last = q.acked
    k = 0
    while True:
        path = q._nth(k)
        k += 1
        if path is None:
            break
        try:
            f = open(path, "rb")
        except OSError:  # a gap in the numbering (cannot happen in normal use)
            continue
        size = 0
        torn = False
        with f:
            for line in f:
                size += len(line)
                r = _parse(line)
                if r is None:
                    torn = line != _HDR
                elif r[0] > last:
                    last = r[0]
                    q.count += 1
                    torn = False
        q.bytes += size
        if path.endswith(".t"):
            q.ttail = SEG_BYTES if torn else size
            q.tlast = last
        else:
            q.tail = SEG_BYTES if torn else size
    if q.thi >= q.tlo:
        # the window of the last thinned record: thinning carries on from it
        for r in q.read(q.tlast - 1, 1):
            q.twin = r[1] // q.thin_s
    q.next_seq = last + 1


def shrink(q):
    """Over the budget: thin the oldest full-resolution file, or (nothing left to thin) drop
    the oldest thinned one, until under it."""
    while q.bytes > q.budget:
        if q.qlo < q.qhi:
            _thin(q)
        elif q.tlo <= q.thi:
            _drop(q)
        else:
            break


def _thin(q):
    """The oldest full-resolution file: the first record of each thin_s window goes on to
    the thinned part, the file is removed."""
    src = q._f(q.qlo, ".q")
    if q.thi < q.tlo or q.ttail >= SEG_BYTES:
        q.thi += 1
        if q.thi < q.tlo:
            q.tlo = q.thi
        with open(q._f(q.thi, ".t"), "wb") as f:
            f.write(_HDR)
        q.ttail = len(_HDR)
        q.bytes += len(_HDR)
    kept = gone = 0
    with open(src, "rb") as f, open(q._f(q.thi, ".t"), "ab") as out:
        for line in f:
            r = _parse(line)
            if r is None or r[0] <= q.tlast or r[0] <= q.acked:
                continue  # header, torn, already thinned, or delivered
            w = r[1] // q.thin_s
            if w == q.twin:
                gone += 1
                continue
            q.twin = w
            q.tlast = r[0]
            out.write(line)
            q.ttail += len(line)
            q.bytes += len(line)
            kept += 1
    q.bytes -= os.stat(src)[6]
    os.remove(src)
    q.cseq = -1
    q.qlo += 1
    q.count -= gone
    q.thinned += gone
    if gone:
        _L.info("%s over %d bytes: oldest readings thinned to one per %ds (%d kept, %d thinned, "
                "%d in all)", q.dir, q.budget, q.thin_s, kept, gone, q.thinned)


def _drop(q):
    """Delete the oldest thinned file (nothing is left to thin)."""
    path = q._f(q.tlo, ".t")
    gone = 0
    with open(path, "rb") as f:
        for line in f:
            r = _parse(line)
            if r is not None and r[0] > q.acked:
                gone += 1
    q.bytes -= os.stat(path)[6]
    os.remove(path)
    q.cseq = -1
    q.tlo += 1
    q.count -= gone
    q.dropped += gone
    _L.warn("%s over %d bytes with everything older thinned: dropped the oldest %d readings "
            "(%d in all)", q.dir, q.budget, gone, q.dropped)
