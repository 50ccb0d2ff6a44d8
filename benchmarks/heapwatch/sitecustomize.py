"""Where the gateway's memory is, every 10 s, from inside the process (glibc only).

Not a benchmark by itself: put this folder on PYTHONPATH and set HEAPWATCH to a file, and
every Python process whose argv names `gateway` (the bench's central system, started as a
subprocess, inherits both) appends one line per 10 s to that file:

    PYTHONPATH=benchmarks/heapwatch HEAPWATCH=/tmp/heap.txt picocharge bench --target ours ...

t (s since start), rss (KB), heap (the main thread's `[heap]` mapping in /proc/self/smaps,
resident KB), anon (resident KB of the anonymous mappings: CPython's object arenas, thread
arenas, mmap'd blocks), and glibc's mallinfo2(): arena (bytes the allocator took from the
system, all arenas), inuse (allocated and not freed), free (freed but kept by the
allocator), mmap (blocks mapped one by one). RSS that grows while `inuse` stays flat and
`free` grows is memory freed by the program but not given back: fragmentation, not a leak.

Touch HEAPWATCH + ".trim" to have it call malloc_trim(0) once (its time and the RSS after
are logged), HEAPWATCH + ".info" to dump malloc_info() (free chunks by size, per arena)
next to it. It runs in a daemon thread; ctypes releases the GIL while glibc works.
"""
import os
import sys

if os.environ.get("HEAPWATCH") and any("gateway" in a for a in sys.argv):
    import ctypes
    import re
    import threading
    import time

    _libc = ctypes.CDLL("libc.so.6")

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                   "usmblks", "fsmblks", "uordblks", "fordblks",
                                                   "keepcost")]

    _libc.mallinfo2.restype = _MallInfo2
    _libc.malloc_trim.argtypes = [ctypes.c_size_t]
    _libc.fopen.restype = ctypes.c_void_p
    _libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    _libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    _libc.fclose.argtypes = [ctypes.c_void_p]
    _MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")

    def _resident():
        tot = {"heap": 0, "anon": 0}
        cur = None
        with open("/proc/self/smaps") as f:
            for line in f:
                if _MAPPING.match(line):
                    parts = line.split()
                    cur = "heap" if parts[5:6] == ["[heap]"] else ("anon" if len(parts) == 5 else None)
                elif cur and line.startswith("Rss:"):
                    tot[cur] += int(line.split()[1])
        return tot

    def _rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)

    def _watch(path):
        t0 = time.time()
        with open(path, "a") as out:
            out.write("# pid %d: %s\n" % (os.getpid(), " ".join(sys.argv)))
            while True:
                time.sleep(10)
                m = _libc.mallinfo2()
                r = _resident()
                line = "t=%.0f rss=%d heap=%d anon=%d arena=%d inuse=%d free=%d mmap=%d" % (
                    time.time() - t0, _rss_kb(), r["heap"], r["anon"], m.arena >> 10,
                    m.uordblks >> 10, m.fordblks >> 10, m.hblkhd >> 10)
                if os.path.exists(path + ".trim"):
                    os.remove(path + ".trim")
                    a = time.perf_counter()
                    rc = _libc.malloc_trim(0)
                    line += " malloc_trim(0) %.1f ms rc=%d rss_after=%d heap_after=%d" % (
                        (time.perf_counter() - a) * 1000, rc, _rss_kb(), _resident()["heap"])
                if os.path.exists(path + ".info"):
                    os.remove(path + ".info")
                    fp = _libc.fopen(("%s.%d.xml" % (path, time.time() - t0)).encode(), b"w")
                    _libc.malloc_info(0, fp)
                    _libc.fclose(fp)
                out.write(line + "\n")
                out.flush()

    threading.Thread(target=_watch, args=(os.environ["HEAPWATCH"],), daemon=True,
                     name="heapwatch").start()
