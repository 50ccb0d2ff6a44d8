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
# Only an index of the pending messages lives in RAM (seq, file offset, length, kind, txref:
# 16 bytes a message, packed in one bytearray); payloads are read back from flash when sent.
# Bounded by a byte budget on flash (and max_entries): when full, the oldest periodic meter
# sample goes first, counted in `dropped`; Start/Stop are never dropped. Transaction messages
# are never thinned (the readings backlogs, flashq.py, are). The file is compacted (rewritten
# to a tmp file, renamed) once what it holds beyond the pending messages is more than both
# compact_bytes and the pending messages themselves: each byte is copied about once.
import json
import os
import struct
import sys

import log
from compat import const, json_dump, str_buf

K_METER = const(0)
K_START = const(1)
K_STOP = const(2)

_L = log.get("journal")
_HEAD = const(128)  # a record's header ("A seq|txref|kind|msg id|action|") fits in this
_REC = const(16)    # bytes of one index entry
_FMT = "<IIHBBI"    # seq, offset, length, kind, 0, txref (0xFFFFFFFF: none)
_NONE = const(0xFFFFFFFF)
BUDGET = 65536      # bytes of pending messages on flash (~75 MeterValues of ~850 bytes)


class _Index:
    """The pending messages in send order, each read as [seq, offset, length, kind, txref].
    Packed 16 bytes each in one bytearray: a list of 5-item lists cost ~64 bytes a message on
    a Pico (~110 on 64 bit), which a long outage multiplies."""

    def __init__(self):
        self.buf = bytearray()
        self.n = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("journal index")
        seq, off, n, kind, _, tx = struct.unpack_from(_FMT, self.buf, i * _REC)
        return [seq, off, n, kind, None if tx == _NONE else tx]

    # iterated through __getitem__ (up to its IndexError)

    def append(self, e):
        if (self.n + 1) * _REC > len(self.buf):
            self.buf.extend(bytes(_REC * (8 if self.n < 16 else self.n // 2)))
        struct.pack_into(_FMT, self.buf, self.n * _REC, e[0], e[1], e[2], e[3], 0,
                         _NONE if e[4] is None else e[4])
        self.n += 1

    def pop(self, i):
        e = self[i]
        m = memoryview(self.buf)
        m[i * _REC:(self.n - 1) * _REC] = m[(i + 1) * _REC:self.n * _REC]
        self.n -= 1
        if not self.n:
            self.buf = bytearray()
        return e


def _cold():
    import journal_cold

    return journal_cold


def _drop_cold():
    sys.modules.pop("journal_cold", None)


class Journal:
    def __init__(self, path="ocpp_journal.log", max_entries=1000, compact_bytes=16384, budget=BUDGET):
        self.path = path
        self.max_entries = max_entries
        self.compact_bytes = compact_bytes
        self.budget = budget
        self.pending = _Index()  # [seq, offset, length, kind, txref] in send order
        self.live = 0            # bytes of the pending messages' records
        self.txids = {}       # txref -> transactionId
        self.open = {}        # txref -> info dict of transactions not yet closed
        self.next_seq = 1
        self.next_txref = 1
        self.size = 0
        self.dropped = 0

    # --- replay ---------------------------------------------------------------
    def load(self):
        """Read the journal back (after a reboot) and compact it. Returns self. The replay is
        in journal_cold.py, loaded for it and dropped after (heap)."""
        _cold().load(self)
        _drop_cold()
        self._compact()
        return self

    def _compact(self):
        """Rewrite the file with only what is still needed (atomic: tmp file + rename). Kept
        here, not in journal_cold.py: online in a transaction it runs every few dozen messages,
        and loading a module for it each time left holes in a 192K heap."""
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
                # each record copied through one small buffer: no ~850-byte block per message
                mv = memoryview(bytearray(128))
                with open(self.path, "rb") as src:
                    for i in range(len(self.pending)):
                        p = self.pending[i]
                        src.seek(p[1])
                        left = p[2]
                        while left > 0:
                            n = src.readinto(mv[:left if left < 128 else 128])
                            if not n:
                                break
                            out.write(mv[:n])
                            left -= n
                        struct.pack_into("<I", self.pending.buf, i * _REC + 4, off)
                        off += p[2] - left
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
        self.live += n
        self.pending.append([seq, off, n, kind, txref])
        while self.live > self.budget and self._make_room():
            pass
        return seq

    def _make_room(self):
        """Drop the oldest meter sample; False if there is none (only start/stop: all kept)."""
        for i, p in enumerate(self.pending):
            if p[3] == K_METER:
                self.pending.pop(i)
                self.live -= p[2]
                self._append("D %d\n" % p[0])
                self.dropped += 1
                _L.warn("journal full (%d messages, %d bytes): dropped the oldest meter sample (#%d, "
                        "%d in all); transaction start/stop messages are kept", len(self.pending) + 1,
                        self.live + p[2], p[0], self.dropped)
                return True
        _L.error("journal full (%d messages, %d bytes) with start/stop messages only: keeping them all",
                 len(self.pending), self.live)
        return False

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
                self.live -= p[2]
                break
        else:
            return
        self._append("D %d\n" % seq)
        self._maybe_compact()

    def _maybe_compact(self):
        spare = self.size - self.live
        if (spare > self.compact_bytes and spare > self.live) or (
                not self.pending and not self.open and self.size > 1024):
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
