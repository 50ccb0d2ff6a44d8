# Journal's replay of the file after a reboot (journal.py): loaded only for it (boot), then
# dropped, so a running board does not hold its bytecode.
import json
import os
import struct

from journal import _L, _Index

_REC = 16  # journal._REC (a const there: not importable)


def load(j):
    """The pending messages, transaction ids and open transactions of j's file."""
    pend = {}
    try:
        f = open(j.path, "rb")
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
                    _replay(j, line, start, pend)
                except (ValueError, IndexError, KeyError) as e:
                    _L.warn("ignoring a bad record at byte %d: %r", start, e)
    j.pending = _Index()
    j.live = 0
    for k in sorted(pend):
        j.pending.append(pend[k])
        j.live += pend[k][2]
    del pend


def _replay(j, line, off, pend):
    tag = line[0:1]
    rest = line[2:-1]
    if tag == b"A":
        seq, txref, kind, _ = rest.split(b"|", 3)
        seq = int(seq)
        txref = None if txref == b"-" else int(txref)
        pend[seq] = [seq, off, len(line), int(kind), txref]
        _seen(j, seq, txref)
    elif tag == b"D":
        pend.pop(int(rest), None)
    elif tag == b"T":
        a, b = rest.split(b" ")
        j.txids[int(a)] = int(b)
    elif tag == b"O":
        a, b = rest.split(b" ", 1)
        j.open[int(a)] = json.loads(b)
        _seen(j, 0, int(a))
    elif tag == b"C":
        j.open.pop(int(rest), None)
    elif tag == b"N":
        a, b = rest.split(b" ")
        _seen(j, int(a) - 1, int(b) - 1)
    else:
        raise ValueError("unknown record %r" % tag)

def _seen(j, seq, txref):
    if seq >= j.next_seq:
        j.next_seq = seq + 1
    if txref is not None and txref >= j.next_txref:
        j.next_txref = txref + 1
