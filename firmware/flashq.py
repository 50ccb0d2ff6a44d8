# A backlog of readings on flash for an uplink that may be down for days (ThingSpeak, MQTT):
# opened when the uplink cannot send (sampler.backlog), appended as they are taken, sent
# oldest first when the link is back, forgotten once the far end has acknowledged them, and
# closed (this module dropped from the heap) once all are sent. Only a handful of integers
# live in RAM; records are streamed.
#
# On flash, a folder per queue (littlefs-friendly: small appends, no file rewritten, one file
# open at a time, files of at most ~SEG_BYTES):
#   <dir>/<n>.t    the thinned part (oldest readings): n = tlo..thi
#   <dir>/<n>.q    the full-resolution part (newest): n = qlo..qhi; the last one is appended to
#                  until it holds SEG_BYTES, then the next is started
#   <dir>/head     "<seq>\n": the last acknowledged record (tmp file + rename: atomic)
# Every file starts "Q1\n", then one record a line: "<seq> <epoch s> <payload>\n" (payload:
# ASCII, no "\n"); seqs grow through the .t files then the .q files. A power cut can leave
# a torn last record (no "\n", or not "<int> <int> ..."): it is skipped when read, and a file
# ending in one is never appended to again. A power cut in the middle of a thinning leaves
# records both in a .t and in the .q they came from: the reader skips any seq not above the
# one before it, so nothing goes out twice.
#
# Bounded by a byte budget: when over it, the oldest full-resolution file is thinned: of its
# records, the first of each `thin_s` window (one per 15 min by default) is appended to the
# thinned part, the file is removed. Only when nothing is left to thin (the .q being written
# is the only one) is the oldest thinned file dropped. Both are counted (thinned, dropped).
import os
import sys
import time

import log
from compat import ticks_diff, ticks_ms, time_ns

_L = log.get("backlog")
SEG_BYTES = 3840   # a littlefs block is 4 KB: a file, sealed past this, stays in one
_HDR = b"Q1\n"


def _cold(name, q):
    """flashq_cold.<name>(q), that module loaded for it and dropped after (heap)."""
    import flashq_cold

    try:
        getattr(flashq_cold, name)(q)
    finally:
        sys.modules.pop("flashq_cold", None)


def _parse(line):
    """(seq, t, payload) of a whole record line, or None (torn or garbled)."""
    if line[-1:] != b"\n":
        return None
    i = line.find(b" ")
    j = line.find(b" ", i + 1)
    if i <= 0 or j <= i + 1:
        return None
    try:
        return int(line[:i]), int(line[i + 1:j]), line[j + 1:-1]
    except ValueError:
        return None


class FlashQ:
    def __init__(self, path, budget=32768, thin_s=900):
        self.dir = path
        self.budget = budget
        self.thin_s = thin_s
        self.tlo, self.thi = 1, 0  # thinned files (tlo > thi: none)
        self.qlo, self.qhi = 1, 0  # full-resolution files
        self.ttail = 0             # bytes in file thi (SEG_BYTES when it must not be appended to)
        self.tail = 0              # bytes in file qhi (idem)
        self.tlast = 0             # the last seq in the thinned part
        self.twin = -1             # its thin_s window
        self.bytes = 0             # on flash, all files
        self.next_seq = 1
        self.acked = 0             # the last acknowledged seq
        self.count = 0             # records kept and not acknowledged
        self.thinned = 0
        self.dropped = 0
        self.hold = False          # a send is streaming records: no thinning or dropping meanwhile
        self.every_ms = 0          # the uplink's interval: the sample task offers readings at it
        self.taken_ms = None       # when the last one was taken (ticks)
        # where the last read ended: the k-th file (_nth), the offset after that record, its
        # seq (-1: nowhere); plain ints, so reading on allocates nothing that outlives a read
        self.ck = self.coff = 0
        self.cseq = -1

    def _f(self, n, ext):
        """The path of file n of the thinned (ext ".t") or full-resolution (".q") part."""
        return "%s/%d%s" % (self.dir, n, ext)

    def _nth(self, k):
        """The k-th file, oldest first (None past the last)."""
        nt = self.thi - self.tlo + 1 if self.thi >= self.tlo else 0
        if k < nt:
            return self._f(self.tlo + k, ".t")
        k += self.qlo - nt
        return self._f(k, ".q") if k <= self.qhi else None

    # --- boot -------------------------------------------------------------------------
    def load(self):
        """Find the files and the seqs on flash (boot). The scan is in flashq_cold.py, loaded
        for it and dropped after: heap a running board does not need."""
        _cold("load", self)
        return self

    # --- writing ----------------------------------------------------------------------
    def append(self, t, payload):
        """Keep a record (t: epoch s; payload: bytes, no newline); returns its seq."""
        seq = self.next_seq
        self.next_seq += 1
        rec = b"%d %d " % (seq, t) + payload + b"\n"
        if self.qhi < self.qlo or self.tail >= SEG_BYTES:
            self.qhi += 1
            with open(self._f(self.qhi, ".q"), "wb") as f:
                f.write(_HDR + rec)
            n = len(_HDR) + len(rec)
            self.tail = 0
        else:
            with open(self._f(self.qhi, ".q"), "ab") as f:
                f.write(rec)
            n = len(rec)
        self.tail += n
        self.bytes += n
        self.count += 1
        if self.bytes > self.budget and not self.hold:
            # thinning, then dropping (flashq_cold.py): only past the budget, in a long outage
            _cold("shrink", self)
        return seq

    def due(self, now_ms, slack_ms):
        """True if a reading should be taken now (every_ms since the last, less slack_ms: the
        sample task's own period, so a 10 s uplink on 5 s samples takes every other one)."""
        if self.taken_ms is not None and ticks_diff(now_ms, self.taken_ms) < self.every_ms - slack_ms:
            return False
        self.taken_ms = now_ms
        return True

    def close(self, ctx, name):
        """Uplink `name` has sent this whole backlog: it sends the latest reading again, and
        this module leaves the heap once no backlog is open (the files are gone already)."""
        ctx.backlogs.pop(name, None)
        if not ctx.backlogs:
            sys.modules.pop("flashq", None)

    # --- reading ----------------------------------------------------------------------
    def __len__(self):
        return self.count

    def read(self, after, n):
        """Up to n records [(seq, t, payload bytes)] with seq > after, oldest first, each seq
        once. Opens one file at a time; a batch's size is the caller's choice, never the
        backlog's. Reading on from the last record read starts where it ended (ck, coff)."""
        out = []
        prev = after
        k = off = 0
        if self.cseq == after:
            k = self.ck
            off = self.coff
        while len(out) < n:
            path = self._nth(k)
            if path is None:
                break
            try:
                f = open(path, "rb")
            except OSError:
                f = None
            if f:
                with f:
                    if off:
                        f.seek(off)
                    for line in f:
                        off += len(line)
                        r = _parse(line)
                        if r is not None and r[0] > prev:
                            out.append(r)
                            prev = r[0]
                            self.ck = k
                            self.coff = off
                            self.cseq = prev
                            if len(out) >= n:
                                break
            k += 1
            off = 0
        return out

    def _first(self, path):
        """The first whole record's seq in a file (a big number if none)."""
        try:
            with open(path, "rb") as f:
                f.readline()
                r = _parse(f.readline())
        except OSError:
            r = None
        return r[0] if r else 1 << 30

    def ack(self, seq, n=1):
        """Records up to seq (n of them) reached the far end: never send them again."""
        if seq <= self.acked:
            return
        self.acked = seq
        self.count = self.count - n if self.count > n else 0
        tmp = self.dir + "/head.tmp"
        with open(tmp, "wb") as f:
            f.write(b"%d\n" % seq)
        os.rename(tmp, self.dir + "/head")
        # files wholly acknowledged go: those whose next file starts at or before seq + 1,
        # the last one only once everything is acknowledged
        while True:
            p0 = self._nth(0)
            if p0 is None:
                break
            p1 = self._nth(1)
            if (self._first(p1) > seq + 1) if p1 else (seq != self.next_seq - 1):
                break
            self.bytes -= os.stat(p0)[6]
            os.remove(p0)
            self.cseq = -1
            if p0.endswith(".t"):
                self.tlo += 1
            else:
                self.qlo += 1
                if self.qlo > self.qhi:
                    self.tail = SEG_BYTES  # the next record starts a new file


def hand_over(ctx, slack_ms):
    """The sample task's reading to each open backlog (an uplink that cannot send), at that
    uplink's interval, stamped with the station's clock: sent from there when it can."""
    now = ticks_ms()
    p = None
    for q in ctx.backlogs.values():
        if q.due(now, slack_ms):
            if p is None:
                p = pack_reading(ctx.state.reading())
            q.append(time_ns() // 1000000000, p)


# --- a reading as a record's payload ---------------------------------------------------
# "temp,hum,current,voltage,power,energy,chip,status code,fault": ~45 bytes, against ~180 as
# telemetry JSON. An empty field is a value not read (None).
def _num(v):
    if v is None:
        return ""
    if isinstance(v, float):
        s = "%.3f" % v
        return s.rstrip("0").rstrip(".") if "." in s else s
    return str(v)


def iso_s(t):
    """'2026-11-30T15:21:07Z' of epoch seconds (ThingSpeak's created_at, MQTT's ts)."""
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % tuple(time.gmtime(t)[:6])


def pack_reading(r):
    import fields

    out = [_num(r.get(k)) for k in fields.READING_KEYS]
    out.append(str(fields.status_code(r.get("status"))))
    out.append(r.get("fault") or "")
    return ",".join(out).encode()


def unpack_reading(payload):
    """The reading dict of pack_reading's payload (numbers as floats); ValueError if bad."""
    import fields

    parts = payload.decode().split(",")
    keys = fields.READING_KEYS
    if len(parts) != len(keys) + 2:
        raise ValueError("backlog record has %d fields, not %d" % (len(parts), len(keys) + 2))
    r = {}
    for i, k in enumerate(keys):
        r[k] = float(parts[i]) if parts[i] else None
    r["status"] = fields.status_name(int(parts[-2]))
    r["fault"] = parts[-1] or None
    return r
