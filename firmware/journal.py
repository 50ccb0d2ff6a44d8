# The transaction-message journal on flash: StartTransaction, StopTransaction and transaction
# MeterValues are written here before they are sent and marked done only when answered, so
# they reach the central system in order across link drops and reboots (power loss included).
#
# An append-only text file, one record a line (a torn last line from a power cut is ignored):
#   N <next_seq> <next_txref>                 counters (first line after a compaction)
#   A <seq>|<txref>|<kind>|<msg id>|<action>|<payload JSON>   a message to deliver
#   D <seq>                                    delivered (or given up): forget it
#   T <txref> <transactionId>                  the central system's id for a local transaction
#   O <txref> <JSON>                           a transaction is open (idTag, meterStart, ...)
#   C <txref>                                  that transaction is closed (Stop journalled)
# Only an index of the pending messages lives in RAM (seq, file offset, length, kind, txref);
# payloads are read back from flash when sent. Bounded: when full, the oldest periodic meter
# sample goes first; Start/Stop are never dropped.
import json
import os

import log
from compat import const, json_dump, str_buf

K_METER = const(0)
K_START = const(1)
K_STOP = const(2)

_L = log.get("journal")
_HEAD = const(128)  # a record's header ("A seq|txref|kind|msg id|action|") fits in this


class Journal:
    def __init__(self, path="ocpp_journal.log", max_entries=100, compact_bytes=16384):
        self.path = path
        self.max_entries = max_entries
        self.compact_bytes = compact_bytes
        self.pending = []     # [seq, offset, length, kind, txref] in send order
        self.txids = {}       # txref -> transactionId
        self.open = {}        # txref -> info dict of transactions not yet closed
        self.next_seq = 1
        self.next_txref = 1
        self.size = 0
        self.dropped = 0

    # --- replay ---------------------------------------------------------------
    def load(self):
        """Read the journal back (after a reboot) and compact it. Returns self."""
        pend = {}
        try:
            f = open(self.path, "rb")
        except OSError:
            f = None
        if f:
            off = 0
            with f:
                while True:
                    line = f.readline()
                    if not line:
                        break
                    start = off
                    off += len(line)
                    if line[-1:] != b"\n":
                        _L.warn("ignoring a torn last record (power cut while writing)")
                        break
                    try:
                        self._replay(line, start, pend)
                    except (ValueError, IndexError, KeyError) as e:
                        _L.warn("ignoring a bad record at byte %d: %r", start, e)
        self.pending = [pend[k] for k in sorted(pend)]
        self._compact()
        return self

    def _replay(self, line, off, pend):
        tag = line[0:1]
        rest = line[2:-1]
        if tag == b"A":
            seq, txref, kind, _ = rest.split(b"|", 3)
            seq = int(seq)
            txref = None if txref == b"-" else int(txref)
            pend[seq] = [seq, off, len(line), int(kind), txref]
            self._seen(seq, txref)
        elif tag == b"D":
            pend.pop(int(rest), None)
        elif tag == b"T":
            a, b = rest.split(b" ")
            self.txids[int(a)] = int(b)
        elif tag == b"O":
            a, b = rest.split(b" ", 1)
            self.open[int(a)] = json.loads(b)
            self._seen(0, int(a))
        elif tag == b"C":
            self.open.pop(int(rest), None)
        elif tag == b"N":
            a, b = rest.split(b" ")
            self._seen(int(a) - 1, int(b) - 1)
        else:
            raise ValueError("unknown record %r" % tag)

    def _seen(self, seq, txref):
        if seq >= self.next_seq:
            self.next_seq = seq + 1
        if txref is not None and txref >= self.next_txref:
            self.next_txref = txref + 1

    def _compact(self):
        """Rewrite the file with only what is still needed (atomic: tmp file + rename)."""
        tmp = self.path + ".tmp"
        need = {}
        for p in self.pending:
            if p[4] is not None:
                need[p[4]] = 1
        for t in self.open:
            need[t] = 1
        with open(tmp, "wb") as out:
            head = ("N %d %d\n" % (self.next_seq, self.next_txref)).encode()
            out.write(head)
            off = len(head)
            if self.pending:
                with open(self.path, "rb") as src:
                    for p in self.pending:
                        src.seek(p[1])
                        line = src.read(p[2])
                        out.write(line)
                        p[1] = off
                        off += len(line)
            for t in need:
                if t in self.txids:
                    line = ("T %d %d\n" % (t, self.txids[t])).encode()
                    out.write(line)
                    off += len(line)
            for t, info in self.open.items():
                line = ("O %d %s\n" % (t, json.dumps(info))).encode()
                out.write(line)
                off += len(line)
        for t in list(self.txids):
            if t not in need:
                del self.txids[t]
        os.rename(tmp, self.path)
        self.size = off

    def _append(self, text):
        data = text.encode()
        with open(self.path, "ab") as f:
            f.write(data)
        self.size += len(data)
        return len(data)

    # --- messages ---------------------------------------------------------------
    def __len__(self):
        return len(self.pending)

    def add(self, kind, msg_id, action, payload, txref=None):
        """Journal a message before it is sent; returns its sequence number."""
        if len(self.pending) >= self.max_entries:
            self._make_room()
        seq = self.next_seq
        self.next_seq += 1
        # written in pieces, the payload (the big part) serialized straight to the file: no
        # copy of it in RAM, which on a fragmented heap is the allocation that fails
        with open(self.path, "ab") as f:
            n = f.write(str_buf("A %d|%s|%d|%s|%s|" % (seq, "-" if txref is None else txref, kind,
                                                 msg_id, action)))
            at = f.tell()
            json_dump(payload, f)
            n += f.tell() - at + f.write(b"\n")
        off = self.size
        self.size += n
        self.pending.append([seq, off, n, kind, txref])
        return seq

    def _make_room(self):
        for i, p in enumerate(self.pending):
            if p[3] == K_METER:
                self.pending.pop(i)
                self._append("D %d\n" % p[0])
                self.dropped += 1
                _L.warn("journal full (%d messages): dropped the oldest meter sample (#%d); "
                        "transaction start/stop messages are kept", self.max_entries, p[0])
                return
        _L.error("journal full (%d messages) with start/stop messages only: keeping them all",
                 self.max_entries)

    def first(self, frame=None, tx_id=None, room=0, into=None):
        """(seq, kind, msg_id, action, buffer, txref) of the oldest undelivered message. Its
        payload goes on the wire as it was written, read from flash straight into one buffer:
        a bytearray of the JSON, or with `frame` (ocppj.call_frame) the whole CALL frame
        around it, `tx_id` put in, `room` bytes free in front, in `into` if it fits. So a big
        message is in RAM once, and usually in no new allocation at all (on a fragmented heap,
        the ~800-byte one that fails first)."""
        if not self.pending:
            return None
        seq, off, n, kind, txref = self.pending[0]
        with open(self.path, "rb") as f:
            f.seek(off)
            head = f.read(n if n < _HEAD else _HEAD)
            # "A seq|txref|kind|mid|action|{...}\n": find the 3rd, 4th and 5th "|"
            i = head.find(b"|")
            i = head.find(b"|", i + 1)
            i = head.find(b"|", i + 1)
            j = head.find(b"|", i + 1)
            k = head.find(b"|", j + 1)
            if k < 0:
                raise ValueError("journal record #%d: no payload in its first %d bytes" % (seq, _HEAD))
            mid = head[i + 1:j].decode()
            action = head[j + 1:k].decode()
            size = n - k - 2  # after the 5th "|", before the "\n"
            if frame:
                buf, at, skip = frame(mid, action, size, tx_id, room, into)
            else:
                buf, at, skip = bytearray(size), 0, 0
            f.seek(off + k + 1 + skip)
            f.readinto(memoryview(buf)[at:at + size - skip])
        return seq, kind, mid, action, buf, txref

    def done(self, seq):
        """The message was answered (or given up): never send it again."""
        for i, p in enumerate(self.pending):
            if p[0] == seq:
                self.pending.pop(i)
                break
        else:
            return
        self._append("D %d\n" % seq)
        self._maybe_compact()

    def _maybe_compact(self):
        if self.size > self.compact_bytes or (not self.pending and self.size > 1024):
            self._compact()

    # --- transactions -------------------------------------------------------------
    def open_tx(self, info):
        """Record a transaction as open (survives power loss); returns its local reference."""
        t = self.next_txref
        self.next_txref += 1
        self.open[t] = info
        self._append("O %d %s\n" % (t, json.dumps(info)))
        return t

    def close_tx(self, txref):
        if self.open.pop(txref, None) is not None:
            self._append("C %d\n" % txref)

    def set_txid(self, txref, tx_id):
        self.txids[txref] = tx_id
        self._append("T %d %d\n" % (txref, tx_id))

    def txid(self, txref):
        return self.txids.get(txref)
