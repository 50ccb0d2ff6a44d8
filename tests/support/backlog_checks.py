# Checks of the readings backlog on flash (firmware/flashq.py), written once and run under
# both interpreters: pytest imports this file under CPython (one test per check), and runs it
# as a script under the unix-port micropython, where it prints "ok <name>" per check.
# MicroPython-compatible code only. Each check runs in a scratch current directory.
try:
    from support import checkrun   # CPython: tests/ is on sys.path
except ImportError:
    import checkrun                # micropython runs this file from tests/support
import os

import flashq

T0 = 1764500000   # 2025-11-30T10:53:20Z
R = {"temp_c": 24.0, "humidity": 45.0, "current_a": 16.02, "voltage_v": 230.1, "power_w": 3680.5,
     "energy_wh": 12345.678, "chip_temp_c": 30.1, "status": "Charging", "fault": None}


def _files(d):
    return sorted(os.listdir(d))


def _size(d):
    n = 0
    for name in os.listdir(d):
        n += os.stat(d + "/" + name)[6]
    return n


def _all(q):
    """Every record still to send, read a few at a time as the uplinks do."""
    out = []
    after = q.acked
    while True:
        rs = q.read(after, 7)
        if not rs:
            return out
        out += rs
        after = rs[-1][0]


def check_backlog__reading_round_trips_through_its_payload():
    p = flashq.pack_reading(R)
    assert p == b"24,45,16.02,230.1,3680.5,12345.678,30.1,2,", p
    assert flashq.unpack_reading(p) == R, flashq.unpack_reading(p)
    r = dict(R, temp_c=None, fault="HighTemperature", status="Faulted")
    assert flashq.unpack_reading(flashq.pack_reading(r)) == r
    for bad in (b"", b"1,2,3", b"a,b,c,d,e,f,g,h,i"):
        try:
            flashq.unpack_reading(bad)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % bad)
    assert flashq.iso_s(T0) == "2025-11-30T10:53:20Z"


def check_backlog__in_order_acked_and_kept_across_a_reboot():
    q = flashq.FlashQ("q").load()
    for i in range(100):
        assert q.append(T0 + 10 * i, b"r%d" % i) == i + 1
    assert len(q) == 100
    got = q.read(0, 3)
    assert got == [(1, T0, b"r0"), (2, T0 + 10, b"r1"), (3, T0 + 20, b"r2")], got
    q.ack(40, 40)
    q = flashq.FlashQ("q").load()          # reboot
    assert len(q) == 60 and q.acked == 40, (len(q), q.acked)
    rs = _all(q)
    assert [r[0] for r in rs] == list(range(41, 101)), rs
    assert q.append(T0 + 1000, b"new") == 101
    q.ack(101, 61)
    assert len(q) == 0 and q.read(101, 5) == []
    # everything delivered: no file left but the head
    assert _files("q") == ["head"], _files("q")
    q = flashq.FlashQ("q").load()
    assert q.next_seq == 102 and len(q) == 0, (q.next_seq, len(q))


def check_backlog__a_torn_last_record_is_skipped_and_never_appended_to():
    q = flashq.FlashQ("q").load()
    for i in range(5):
        q.append(T0 + i, b"r%d" % i)
    name = "q/%d.q" % q.qhi
    with open(name, "ab") as f:
        f.write(b"6 17645")   # a power cut in the middle of writing record 6
    q = flashq.FlashQ("q").load()
    assert len(q) == 5 and q.next_seq == 6, (len(q), q.next_seq)
    q.append(T0 + 6, b"r6")
    assert q.qhi == int(name[2:-2]) + 1, "a new file after the torn one"
    assert [r[0] for r in _all(q)] == [1, 2, 3, 4, 5, 6], _all(q)
    # garbage that ends like a line is skipped too
    with open("q/%d.q" % q.qhi, "ab") as f:
        f.write(b"x y\n")
    q = flashq.FlashQ("q").load()
    assert [r[0] for r in _all(q)] == [1, 2, 3, 4, 5, 6]


def check_backlog__over_budget_thins_the_oldest_then_drops():
    q = flashq.FlashQ("q", budget=6000, thin_s=900).load()
    for i in range(1000):          # one every 60 s: 16.7 h
        q.append(T0 + 60 * i, b"%d" % i)
        assert q.bytes <= 6000 + flashq.SEG_BYTES, q.bytes
    assert q.bytes == _size("q"), (q.bytes, _size("q"))
    rs = _all(q)
    seqs = [r[0] for r in rs]
    assert seqs == sorted(seqs) and len(rs) == len(q), (len(rs), len(q))
    assert q.thinned > 0 and len(rs) + q.thinned + q.dropped == 1000, (len(rs), q.thinned, q.dropped)
    # the thinned part: one reading per 15-minute window; the newest: every reading
    old = [r[1] for r in rs if r[0] <= q.tlast]
    wins = [t // 900 for t in old]
    assert wins == sorted(set(wins)), wins
    new = [r[1] for r in rs if r[0] > q.tlast]
    assert all(b - a == 60 for a, b in zip(new, new[1:])) and new[-1] == T0 + 60 * 999, new
    # a reboot finds the same
    q2 = flashq.FlashQ("q", budget=6000, thin_s=900).load()
    assert _all(q2) == rs and q2.tlast == q.tlast and q2.twin == q.twin and q2.bytes == q.bytes


def check_backlog__48_hours_at_the_default_intervals_fit_the_default_budget():
    # MQTT's default interval (10 s; ThingSpeak's 15 s takes fewer) for 48 h into the
    # default budget (config.py's backlog.flash_kb and thin_s): the oldest reading kept is
    # 48 h old, nothing dropped
    import config

    d = config.SCHEMA["backlog"]
    budget = d["flash_kb"][1] * 1024
    p = flashq.pack_reading(R)
    q = flashq.FlashQ("q", budget=budget, thin_s=d["thin_s"][1]).load()
    n = 48 * 360
    for i in range(n):
        q.append(T0 + 10 * i, p)
    assert q.dropped == 0 and q.bytes <= budget, (q.dropped, q.bytes)
    first = q.read(0, 1)[0]
    assert first[1] == T0 and len(q) + q.thinned == n, (first, len(q), q.thinned)
    print("  48 h at 10 s: %d readings, %d kept (%d thinned), %d bytes in %d files, %d bytes a "
          "reading" % (n, len(q), q.thinned, q.bytes, len(os.listdir("q")), q.bytes // len(q)))


def check_backlog__a_power_cut_while_thinning_sends_nothing_twice():
    q = flashq.FlashQ("q", budget=4000, thin_s=900).load()
    for i in range(60):
        q.append(T0 + 60 * i, b"%d" % i)
    # as if the power went after the kept records of the oldest .q reached the thinned part
    # and before that .q was removed: the same records in both
    lo = q.qlo
    with open("q/%d.q" % lo, "rb") as f:
        lines = f.readlines()[1:]
    with open("q/%d.t" % (q.thi + 1), "wb") as f:
        f.write(b"Q1\n" + b"".join(lines[:3]))
    q = flashq.FlashQ("q", budget=4000, thin_s=900).load()
    seqs = [r[0] for r in _all(q)]
    assert seqs == sorted(set(seqs)), seqs


def check_backlog__ack_during_hold_and_due_follows_the_uplink_interval():
    q = flashq.FlashQ("q", budget=3000).load()
    q.hold = True                      # a bulk write is streaming: nothing moves
    for i in range(200):
        q.append(T0 + i, b"x" * 20)
    assert q.thinned == 0 and q.dropped == 0 and q.bytes > 3000
    q.hold = False
    q.append(T0 + 200, b"x" * 20)
    assert q.bytes <= 3000 + flashq.SEG_BYTES and q.thinned > 0, (q.bytes, q.thinned)
    q.every_ms = 10000
    assert q.due(0, 2500) and not q.due(5000, 2500) and q.due(10000, 2500)
    assert not q.due(12000, 2500) and q.due(17600, 2500)


CHECKS = checkrun.checks(globals())

if __name__ == "__main__":
    checkrun.main(CHECKS, scratch=True)
