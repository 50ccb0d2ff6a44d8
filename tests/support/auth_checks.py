# Checks of the Local Auth List and cache store (firmware/authstore.py), written once and run
# under both interpreters like pilot_checks.py, in the current directory (the test's tmp_path):
# a Full list of 1,000 tags, every one found by lookup from flash (and tags that are not there
# not found), a Differential merged in, the limit kept with the file untouched, expiry, the
# cache starting over when full, and a lookup's heap: it does not grow with the list.
# MicroPython-compatible code only.
try:
    from support import checkrun   # CPython: tests/ is on sys.path
except ImportError:
    import checkrun                # micropython runs this file from tests/support

import gc
import os

import authstore as A


def _tag(i):
    return "04%06X" % (i * 7919 % 0xFFFFFF)      # spread over the key space, not in order


def _full(n, ver=1):
    """A list of n tags sent as the firmware takes them (cs_auth): a Full of 10
    (SendLocalListMaxLength), then Differentials of 10, the last one with listVersion `ver`."""
    for k in range(0, max(n, 1), 10):
        A.write(A.LIST, [(_tag(i), A.pack(_tag(i), "Accepted" if i % 10 else "Blocked", 0, "G%d" % (i % 5)))
                         for i in range(k, min(n, k + 10))], ver if k + 10 >= n else 0, k == 0, A.LIST_MAX)
    return A.count()


def check_full_1000_every_tag_found_from_flash():
    _full(1000, 7)
    assert A.version() == 7 and A.count() == 1000, (A.version(), A.count())
    assert os.stat(A.LIST)[6] == 8 + 1000 * A.REC
    for i in range(1000):
        r = A.lookup(_tag(i))
        assert r == ("Accepted" if i % 10 else "Blocked", "G%d" % (i % 5)), (i, r)
    for t in ("04000001", "00", "FFFFFFFF", "", "X" * 20):
        assert A.lookup(t) is None, t
    assert A.lookup("X" * 21) is None            # longer than an idTag: not there, no error


def check_differential_adds_replaces_removes():
    _full(1000, 1)
    n = A.write(A.LIST, [(_tag(0), None), (_tag(1), A.pack(_tag(1), "Blocked")),
                         ("NEWTAG", A.pack("NEWTAG", "Accepted", 0, "P"))], 2, False, A.LIST_MAX)
    assert n == 1000 and A.version() == 2, n
    assert A.lookup(_tag(0)) is None and A.lookup(_tag(1)) == ("Blocked", None)
    assert A.lookup("NEWTAG") == ("Accepted", "P") and A.lookup(_tag(999)) == ("Accepted", "G4")


def check_too_many_leaves_the_list_as_it_was():
    _full(1000, 3)
    before = open(A.LIST, "rb").read()
    try:
        A.write(A.LIST, [("MORE1", A.pack("MORE1", "Accepted"))], 4, False, A.LIST_MAX)
        raise AssertionError("1,001 entries were taken")
    except ValueError as e:
        assert "1001 entries" in str(e), e
    assert open(A.LIST, "rb").read() == before and A.version() == 3
    assert "auth_list.bin.tmp" not in os.listdir()


def check_duplicate_and_bad_tags_refused():
    for changes in ([("A", A.pack("A", "Accepted")), ("A", None)], [("X" * 21, None)]):
        try:
            A.write(A.LIST, changes, 9, True, A.LIST_MAX)
            raise AssertionError("taken: %r" % (changes,))
        except ValueError:
            pass


def check_expiry_reads_expired():
    A.write(A.LIST, [("T", A.pack("T", "Accepted", 1000000, None))], 1, True, 10)
    assert A.lookup("T", now_s=999999) == ("Accepted", None)
    assert A.lookup("T", now_s=1000001) == ("Expired", None)
    assert A.lookup("T") == ("Accepted", None)


def check_cache_starts_over_when_full():
    A.clear(A.CACHE)
    for i in range(A.CACHE_MAX):
        A.cache_put("C%d" % i, "Accepted")
    assert A.count(A.CACHE) == A.CACHE_MAX and A.lookup("C5", A.CACHE) == ("Accepted", None)
    A.cache_put("C0", "Blocked")                  # a known tag: replaced in place
    assert A.count(A.CACHE) == A.CACHE_MAX and A.lookup("C0", A.CACHE) == ("Blocked", None)
    A.cache_put("NEW", "Accepted")                # one more: it starts over
    assert A.count(A.CACHE) == 1 and A.lookup("NEW", A.CACHE) and A.lookup("C5", A.CACHE) is None


def check_no_list_no_version():
    A.clear(A.LIST)
    assert A.version() == 0 and A.count() == 0 and A.lookup("04A1B2C3") is None


def check_lookup_heap_does_not_grow_with_the_list():
    if not hasattr(gc, "mem_alloc"):
        return           # CPython: MicroPython's heap is what this is about
    A.write(A.LIST, [(_tag(i), A.pack(_tag(i), "Accepted")) for i in range(10)], 1, True, A.LIST_MAX)
    gc.collect()
    b = gc.mem_alloc()
    A.lookup(_tag(3))
    small = gc.mem_alloc() - b
    _full(1000)
    gc.collect()
    b = gc.mem_alloc()
    A.lookup(_tag(3))
    big = gc.mem_alloc() - b
    # ten probes instead of four: a few bytes each, never the list (48 KB)
    assert big < small + 1024 and big < 4096, (small, big)


CHECKS = checkrun.checks(globals())

if __name__ == "__main__":
    checkrun.main(CHECKS)
