# Checks of the OCPP journal's flash budget and RAM index (firmware/journal.py), run under
# both interpreters like pure_checks.py: pytest imports this file under CPython, the unix-port
# micropython runs it as a script ("ok <name>" per check). Scratch current directory each.
try:
    from support import checkrun   # CPython: tests/ is on sys.path
except ImportError:
    import checkrun                # micropython runs this file from tests/support
import gc
import os

import journal

# a transaction MeterValues as the station journals it (~780 bytes of JSON)
_SV = [{"value": "12345.678", "context": "Sample.Periodic", "format": "Raw", "measurand": m,
        "location": "Outlet", "unit": "Wh"} for m in ("Energy.Active.Import.Register", "Current.Import",
                                                     "Voltage", "Power.Active.Import", "Temperature")]


def _mv(n):
    return {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-30T10:%02d:00.000Z" % (n % 60),
                                              "sampledValue": _SV}]}


def check_journal__byte_budget_drops_oldest_samples_never_start_or_stop():
    j = journal.Journal("b.log", budget=6000).load()
    ref = j.open_tx({})
    j.add(journal.K_START, "s", "StartTransaction", {"idTag": "T"}, ref)
    for n in range(20):
        j.add(journal.K_METER, "m%d" % n, "MeterValues", _mv(n), ref)
        assert j.live <= 6000, j.live
    j.add(journal.K_STOP, "e", "StopTransaction", {"meterStop": 9}, ref)
    kept = [p[3] for p in j.pending]
    assert kept[0] == journal.K_START and kept[-1] == journal.K_STOP, kept
    assert j.dropped == 20 - (len(kept) - 2) and j.dropped > 0, (j.dropped, kept)
    j2 = journal.Journal("b.log", budget=6000).load()       # the same after a reboot
    mids = []
    while len(j2):
        e = j2.first()
        mids.append(e[2])
        j2.done(e[0])
    n = len(kept) - 2
    assert mids == ["s"] + ["m%d" % i for i in range(20 - n, 20)] + ["e"], mids


def check_journal__index_costs_16_bytes_a_message_in_ram():
    j = journal.Journal("r.log", budget=1 << 30).load()
    ref = j.open_tx({})
    gc.collect()
    a = gc.mem_alloc()
    for n in range(600):
        j.add(journal.K_METER, "m%d" % n, "MeterValues", {"n": n}, ref)
    gc.collect()
    per = (gc.mem_alloc() - a) / 600
    assert per <= 28, per   # 16 bytes packed, the bytearray grown by halves
    assert [p[0] for p in j.pending][:3] == [1, 2, 3] and len(j) == 600
    j.done(1)
    assert j.pending[0][0] == 2 and j.first()[2] == "m1"
    print("  journal index: %.1f bytes a pending message" % per)


def check_journal__compaction_copies_each_byte_about_once():
    # 300 messages, 100 pending at a time: what compaction writes stays near what was added
    j = journal.Journal("c.log", compact_bytes=4096, budget=1 << 30).load()
    ref = j.open_tx({})
    added = [0]
    copied = [0]
    real = j._compact

    def counting():
        copied[0] += j.live
        real()

    j._compact = counting
    for n in range(300):
        j.add(journal.K_METER, "m%d" % n, "MeterValues", _mv(n), ref)
        added[0] += j.pending[len(j.pending) - 1][2]
        if len(j) > 100:
            j.done(j.first()[0])
    assert copied[0] <= 2 * added[0], (copied[0], added[0])
    assert os.stat("c.log")[6] <= 3 * j.live + 4096, (os.stat("c.log")[6], j.live)


CHECKS = checkrun.checks(globals())

if __name__ == "__main__":
    checkrun.main(CHECKS, scratch=True)
