"""Where the gateway's time goes, from a py-spy raw (collapsed-stack) profile: the share of
samples per thread, what the main thread (the event loop) spends its samples on, and what
the SQLite writer thread does. Not a benchmark by itself; how the profile in
docs/performance.md was summed up.

    py-spy record --pid <gateway> --rate 100 --duration 30 --format raw --output prof.raw
    python benchmarks/profile_shares.py prof.raw
    python benchmarks/profile_shares.py --gil prof.raw     # a profile taken with py-spy's --gil

Threads that py-spy samples while they wait on a queue (the executor's idle worker) are
counted apart as idle. Main-thread lines are inclusive: a sample counts in every line whose
code is on its stack, so they do not add up to 100 %.
"""
import collections
import gzip
import sys

IDLE = ("concurrent/futures/thread.py:81",)   # ThreadPoolExecutor worker: work_queue.get()

MAIN = [  # (line, predicate over the stack's frames)
    ("asyncio transport write (the send() of every frame)",
     lambda fs: any("write (asyncio/selector_events.py" in f for f in fs)),
    ("asyncio transport read, without websockets (recv_into, copy)",
     lambda fs: any("_read_ready__get_buffer (asyncio/selector_events.py" in f for f in fs)
     and not any("websockets/" in f for f in fs)),
    ("websockets: framing, parsing, send and receive (all of it)",
     lambda fs: any("websockets/" in f for f in fs)),
    ("schema checks (gateway/validate.py)", lambda fs: any("validate.py" in f for f in fs)),
    ("json.loads / json.dumps", lambda fs: any("json/" in f for f in fs)),
    ("OCPP session and handlers (gateway/csms.py)", lambda fs: any("csms.py" in f for f in fs)),
    ("MQTT uplink and paho", lambda fs: any("uplinks.py" in f or "paho/" in f for f in fs)),
    ("GcWatch, the collector callback (the collection itself has no frame)",
     lambda fs: any("GcWatch" in f for f in fs)),
]


def shares(lines):
    threads, main, writer = collections.Counter(), collections.Counter(), collections.Counter()
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        n = int(n)
        fs = stack.split(";")
        if fs[0].startswith("_run_module_as_main"):
            kind = "main thread (event loop)"
            for name, pred in MAIN:
                if pred(fs):
                    main[name] += n
            main["_total"] += n
        elif any("Store._worker" in f for f in fs):
            kind = "SQLite writer thread"
            leaf = fs[-1]
            if "_insert_run" in leaf:
                writer["INSERT of the readings (one executemany per batch)"] += n
            else:
                writer[leaf] += n   # Store._worker lines: see gateway/store.py at that commit
            writer["_total"] += n
        elif any(k in stack for k in IDLE):
            kind = "other threads, waiting (idle)"
        else:
            kind = "other threads"
        threads[kind] += n
    return threads, main, writer


# A profile taken with py-spy's --gil (only the thread holding the GIL is sampled: the Python
# CPU, with the C and kernel work done while holding it), as in issue 17's paced profile:
# the gateway on aiohttp, per concern, inclusive (the session line holds the send and the checks).
GIL = [
    ("WebSocket send of the answers (aiohttp's transport.write: the kernel's TCP work)",
     lambda fs: any("_write_websocket_frame" in f for f in fs)),
    ("MQTT uplink and paho (outbox reads, publishes, PUBACKs)",
     lambda fs: any("uplinks.py" in f or "paho/" in f for f in fs)),
    ("SQLite writer thread (inserts, commits, the linger)", lambda fs: any("Store._worker" in f for f in fs)),
    ("schema checks (gateway/validate.py)", lambda fs: any("validate.py" in f for f in fs)),
    ("json.loads / json.dumps", lambda fs: any("json/" in f for f in fs)),
    ("OCPP session and handlers, all of it (gateway/csms.py)", lambda fs: any("csms.py" in f for f in fs)),
    ("aiohttp's receive path (data_received, WebSocket reader, receive())",
     lambda fs: any(("web_protocol.py" in f and "data_received" in f) or "WebSocketResponse.receive" in f
                    or "reader" in f for f in fs)),
    ("/metrics (the bench's outbox-depth sampler)",
     lambda fs: any("metrics.py" in f or "prometheus_client" in f for f in fs)),
]


def gil_shares(lines):
    got, tot = collections.Counter(), 0
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        n = int(n)
        tot += n
        fs = stack.split(";")
        for name, pred in GIL:
            if pred(fs):
                got[name] += n
    return got, tot


def main(path, gil=False):
    opener = gzip.open if path.endswith(".gz") else open
    if gil:
        with opener(path, "rt") as f:
            got, tot = gil_shares(f)
        print("samples holding the GIL: %d" % tot)
        for name, _p in GIL:
            print("  %-84s %5.1f %%" % (name, 100.0 * got[name] / max(1, tot)))
        return
    with opener(path, "rt") as f:
        threads, main_, writer = shares(f)
    tot = sum(threads.values())
    print("samples: %d (all threads)" % tot)
    print("\nby thread (share of all samples)")
    for k, v in threads.most_common():
        print("  %-62s %5.1f %%" % (k, 100.0 * v / tot))
    print("\nmain thread, inclusive (share of its samples)")
    for name, _p in MAIN:
        print("  %-62s %5.1f %%" % (name, 100.0 * main_[name] / max(1, main_["_total"])))
    print("\nSQLite writer thread (share of its samples, by innermost frame)")
    for k, v in writer.most_common(7):
        if k != "_total":
            print("  %-62s %5.1f %%" % (k[:62], 100.0 * v / max(1, writer["_total"])))


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if a != "--gil"][0], gil="--gil" in args)
