"""Heap of the firmware on the real chip: MicroPython v1.28.0 RPI_PICO_W in the rp2040js emulator.

Boots the official build (built from the v1.28.0 tag, ../shared/rp2/, see its README) with
what `picocharge deploy` puts on a Pico W (the firmware and the board module compiled by
mpy-cross, umqtt.simple and microdot from the PyPI cache) on a littlefs image made on the
host, and prints, from the board's own gc.mem_free():
  - the free heap at boot (after gc.collect(), littlefs mounted),
  - the free heap after each module is imported: the board libraries, the board module, then
    every firmware module found in firmware/ (dependencies first, so each figure is the
    module's own cost),
  - the free heap while the app runs with every uplink configured (OCPP, ThingSpeak, MQTT,
    the status page; Wi-Fi down: the emulator has no CYW43 radio, so nothing connects),
  - what the modules take at one time, which every module at once is not: those the running
    app holds (its sys.modules), then each use (USES: the modules one use loads together and
    drops after it) imported on top of them and dropped again; held + the largest use,
  - the smallest free heap the app still runs in: a filler bytearray allocated before the app
    starts is grown by bisection until the app fails (MemoryError) within the run.
Runs repeat to within ~100 bytes (where the USB host's input lands in the boot varies with
the host's timing); the bisection's bracket is reported with the minimum.

  python benchmarks/rp2040_heap.py            # all of it, ~1 min
  python benchmarks/rp2040_heap.py --json     # the figures as JSON
  python benchmarks/rp2040_heap.py --no-bisect
  python benchmarks/rp2040_heap.py --qstr     # the qstr-pool cliff, here and on the unix port (~2 min)
  python benchmarks/rp2040_heap.py --qstr --unix-heap 224K --preload

Needs node (18+) and npm: rp2040js (pinned in benchmarks/rp2040/package.json) is installed with
`npm ci` into the cache (~/.cache/picocharge/rp2040js), never into the repository.
"""
import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "rp2040"


def _rp2_dir():
    """$PICOCHARGE_RP2_DIR, else ../shared/rp2 next to the checkout (where CI has it), else the
    first shared/rp2 further up (a git worktree one level deeper)."""
    if os.environ.get("PICOCHARGE_RP2_DIR"):
        return Path(os.environ["PICOCHARGE_RP2_DIR"])
    for up in ROOT.parents:
        if (up / "shared" / "rp2").is_dir():
            return up / "shared" / "rp2"
    return ROOT.parent / "shared" / "rp2"


RP2_DIR = _rp2_dir()
UF2 = "micropython-v1.28.0-RPI_PICO_W.uf2"
BOOTROM = "rp2040-bootrom-b1.bin"
# RPI_PICO_W v1.28.0: the littlefs filesystem MicroPython mounts at / (its README)
FS_OFFSET = 0x12C000
FS_BLOCKS = 212
BLOCK = 4096
# the board libraries, as their modules import them
LIB_MODULES = ("umqtt.simple", "microdot")
# the station as the benchmark runs it: every uplink configured, so the app imports everything
CONFIG = {
    "station_id": "HEAP-1",
    "wifi": {"ssid": "bench", "password": "bench-pw", "timeout_s": 2},
    "ocpp": {"url": "ws://192.168.1.10:9000/ocpp", "password": "bench-pw", "id_tag": "BENCH"},
    "thingspeak": {"enabled": True, "url": "http://192.168.1.10:3000", "write_key": "K"},
    "mqtt": {"enabled": True, "host": "192.168.1.10"},
    "web": {"enabled": True},
    "sensors": {"interval_s": 1},
}


# The emulated CPU's speed: a cycle is 1/MHZ us of emulated time. rp2040js executes ~30M
# instructions a second here; at 125 MHz (the real clock) every emulated second of waiting
# costs ~3 s, at 25 MHz ~0.6 s. Heap use does not depend on it (the same run at 125 and 25 MHz
# shows the same figures), only busy-waits take fewer instructions.
MHZ = 25


class BenchError(RuntimeError):
    pass


def _cache():
    from picocharge.paths import cache_dir

    return cache_dir()


def rp2040js_dir():
    """The cache folder holding node_modules/rp2040js at the pinned version (npm ci if not)."""
    want = json.loads((HERE / "package.json").read_text())["dependencies"]["rp2040js"]
    d = _cache() / "rp2040js"
    have = d / "node_modules" / "rp2040js" / "package.json"
    if have.is_file() and json.loads(have.read_text()).get("version") == want and \
            (d / "package-lock.json").read_bytes() == (HERE / "package-lock.json").read_bytes():
        return d
    if not shutil.which("node") or not shutil.which("npm"):
        raise BenchError("node and npm are needed (Debian: apt-get install nodejs npm)")
    d.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(HERE / name, d / name)
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=d,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise BenchError("npm ci of rp2040js %s failed: %s" % (want, r.stderr[-2000:]))
    return d


def _top_imports(path):
    """Names imported when the module is imported (not those inside functions)."""
    tree = ast.parse(Path(path).read_text())
    out = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                out.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                out.append(child.module)
            visit(child)

    visit(tree)
    return out


def firmware_modules(fw_dir=None):
    """Every firmware module (firmware/*.py but main.py), dependencies before dependents."""
    fw_dir = Path(fw_dir or ROOT / "firmware")
    mods = sorted(p.stem for p in fw_dir.glob("*.py") if p.stem not in ("__init__", "main"))
    deps = {m: [d for d in _top_imports(fw_dir / (m + ".py")) if d in mods and d != m] for m in mods}
    order, seen = [], set()

    def add(m, stack=()):
        if m in seen or m in stack:
            return
        for d in deps[m]:
            add(d, stack + (m,))
        seen.add(m)
        order.append(m)

    for m in mods:
        add(m)
    return order


def deploy_files():
    """(path on board, bytes) as `picocharge deploy --board pico_w` would write them, but
    /main.py: the benchmark's driver takes its place (and calls app.main() itself)."""
    from picocharge import cmd_deploy

    files = cmd_deploy.plan("pico_w", compile=True)
    return [(dest, data) for dest, data, _other in files if dest != "/main.py"]


def build_image(files, driver, config):
    from littlefs import LittleFS

    fs = LittleFS(block_size=BLOCK, block_count=FS_BLOCKS, prog_size=256, read_size=256)
    for dest, data in files:
        parts = dest.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            try:
                fs.mkdir(d)
            except Exception:  # exists
                pass
        with fs.open("/".join(parts), "wb") as f:
            f.write(data)
    with fs.open("config.json", "w") as f:
        f.write(json.dumps(config))
    with fs.open("main.py", "w") as f:
        f.write(driver)
    return bytes(fs.context.buffer)


def boot(image, timeout_s=120, mhz=MHZ):
    """Boot the Pico W build with `image` as its filesystem; the REPL output up to the prompt
    that follows main.py (the board's `>>> `)."""
    for name in (UF2, BOOTROM):
        if not (RP2_DIR / name).is_file():
            raise BenchError("%s not found in %s (set PICOCHARGE_RP2_DIR)" % (name, RP2_DIR))
    lib = rp2040js_dir()
    with tempfile.NamedTemporaryFile(suffix=".img") as img:
        img.write(image)
        img.flush()
        # the driver waits for one byte: output before the USB host is there would be lost
        r = subprocess.run(["node", str(HERE / "run.mjs"), str(lib), str(RP2_DIR / BOOTROM),
                            str(RP2_DIR / UF2), img.name, str(FS_OFFSET), "--input", "g",
                            "--end", "\n>>> ", "--timeout-s", str(timeout_s), "--mhz", str(mhz)],
                           capture_output=True, text=True, timeout=timeout_s + 30)
    if r.returncode not in (0, 3):
        raise BenchError("rp2040js failed (exit %d): %s" % (r.returncode, r.stderr[-2000:]))
    return r.stdout


_IMPORTS = """import gc, sys
sys.stdin.read(1)
gc.collect()
print('@boot', gc.mem_free())
for m in %r:
    try:
        __import__(m)
    except Exception as e:
        print('@error', m, repr(e))
    gc.collect()
    print('@mod', m, gc.mem_free())
"""

# the end of the probes that run the app: the probe task beside it, then app.main() until the
# probe stops it
_RUN_APP = """asyncio.create_task(probe())
try:
    import app
    app.main()
    print('@stopped')
except BaseException as e:
    print('@crash', repr(e))
"""

_APP = """import gc, sys
sys.stdin.read(1)
filler = bytearray(%d)
gc.collect()
print('@start', gc.mem_free())
import asyncio
async def probe():
    for i in range(%d):
        await asyncio.sleep(1)
        gc.collect()
        print('@free', gc.mem_free())
    print('@mods', ' '.join(sorted(sys.modules)))
    raise KeyboardInterrupt  # as Ctrl-C would: app.main() opens the relay and returns
""" + _RUN_APP


# What the firmware never holds at once: modules loaded for one use and dropped after it (the
# app's sys.modules.pop), grouped as one use loads them together; every other module a running
# station does not hold is a use of its own (with what it imports when loaded). The largest use
# on top of what a running station holds is the most the modules take at one time.
USES = (
    ("config", "logring"),                                     # boot: the config read, the log ring
    ("app_tasks", "flashq_cold", "journal_cold"),              # boot: the tasks made, the backlogs scanned
    ("ws_open", "tlsca", "linkerr", "mqtt_connect"),           # the links opened
    ("flashq", "flashq_cold", "mqtt_backlog", "ts_bulk"),      # an outage: both backlogs open and sent
    ("ocpp_calls", "cs_tx", "authz", "ocpp_smart", "chargeprofile", "composite", "smartlimit"),
    # ^ a RemoteStart with a TxProfile; v a SetChargingProfile, GetCompositeSchedule
    ("ocpp_calls", "ocpp_smart", "chargeprofile", "composite", "smartlimit"),
    ("ocpp_calls", "cs_auth", "authstore"),                    # SendLocalList
    ("ocpp_calls", "cs_reserve", "authz"),                     # ReserveNow
    ("ocpp_calls", "cs_config"),                               # Get/ChangeConfiguration
    ("ocpp_calls", "cs_admin"),                                # Reset, TriggerMessage, ...
    ("ocpp_calls", "cs_fwmgmt", "ota", "httpstream", "fwslot"),  # an UpdateFirmware
    ("ocpp_calls", "cs_fwmgmt", "diag", "logring", "httpstream"),  # a GetDiagnostics
)
# the tasks the benchmark's station does not run (no pilot, no reader): held when configured
TASKS_NOT_RUN = ("evse", "rfid")


def held_order(held):
    """The firmware modules a running station holds (`held`: its sys.modules, plus the tasks
    the benchmark does not run), dependencies first, after the libraries and the board."""
    fw = firmware_modules()
    want = set(held) | set(TASKS_NOT_RUN)
    for m in reversed(fw):   # what a held module imports when loaded is held too
        if m in want:
            want.update(d for d in _top_imports(ROOT / "firmware" / (m + ".py")) if d in fw)
    return list(LIB_MODULES) + ["board"] + [m for m in fw if m in want]


def uses(order):
    """The uses measured on top of `order` (what a station holds): USES, then every firmware
    module in neither, alone."""
    out = [g for g in USES]
    seen = set(order)
    for g in USES:
        seen.update(g)
    out += [(m,) for m in firmware_modules() if m not in seen]
    return out


_HELD = """import gc, sys
sys.stdin.read(1)
gc.collect()
print('@boot', gc.mem_free())
for m in %r:
    __import__(m)
def use(g, tag):
    have = set(sys.modules)
    gc.collect()
    f = gc.mem_free()
    try:
        for m in g:
            __import__(m)
    except Exception as e:
        print('@error', m, repr(e))
    gc.collect()
    if tag:
        print(tag, ','.join(g), f - gc.mem_free())
    for m in list(sys.modules):
        if m not in have:
            del sys.modules[m]
uses = %r
for g in uses:
    use(g, None)
gc.collect()
print('@held', gc.mem_free())
for g in uses:
    use(g, '@use')
"""


def measure_held(files, held):
    """Free heap with what a running station holds imported (`held`, its sys.modules), and
    each use (`uses`) imported on top of it and dropped again: what the modules can take at
    one time is the held modules and the largest use. Every use is loaded and dropped once
    before the held figure is read: the names a module brings (qstrs) stay after it is
    dropped, as they do on a station that has made each use once, and the first use measured
    does not carry them for all the others."""
    order = held_order(held)
    out = boot(build_image(files, _HELD % (order, uses(order)), CONFIG))
    boot_free, held_free = _ints(out, "@boot"), _ints(out, "@held")
    errors = re.findall(r"^@error (\S+) (.*)$", out, re.M)
    got = [{"modules": g.split(","), "cost": int(c)}
           for g, c in re.findall(r"^@use (\S+) (-?\d+)\r?$", out, re.M)]
    if not boot_free or not held_free or errors or len(got) != len(uses(order)):
        raise BenchError("the held-modules run did not finish: %s\n%s" % (errors, out[-3000:]))
    big = max(got, key=lambda g: g["cost"])
    return {"modules": order, "held": boot_free[0] - held_free[0], "uses": got,
            "largest_use": big, "held_and_largest_use": boot_free[0] - held_free[0] + big["cost"]}


def _ints(out, tag):
    return [int(x) for x in re.findall(r"^%s (\d+)\r?$" % tag, out, re.M)]


def measure_imports(files, order):
    t = time.monotonic()
    out = boot(build_image(files, _IMPORTS % (list(order),), CONFIG))
    boot_free = _ints(out, "@boot")
    mods = re.findall(r"^@mod (\S+) (\d+)\r?$", out, re.M)
    errors = re.findall(r"^@error (\S+) (.*)$", out, re.M)
    if not boot_free or len(mods) != len(order) or errors:
        raise BenchError("the import run did not finish: %s\n%s" % (errors, out[-3000:]))
    prev = boot_free[0]
    per = []
    for name, free in mods:
        per.append({"module": name, "free": int(free), "cost": prev - int(free)})
        prev = int(free)
    return {"boot_free": boot_free[0], "modules": per, "after_imports": prev,
            "imported": boot_free[0] - prev, "seconds": round(time.monotonic() - t, 1)}


def run_app(files, filler=0, seconds=10):
    """One boot running the app for `seconds` (emulated) behind a `filler`-byte bytearray:
    (ran cleanly, free heap before the app, lowest free heap while it ran, output)."""
    out = boot(build_image(files, _APP % (filler, seconds), CONFIG))
    start = _ints(out, "@start")
    frees = _ints(out, "@free")
    ok = ("@stopped" in out and "MemoryError" not in out and "running (firmware" in out
          and len(frees) == seconds and "[meter]" in out)
    return ok, (start[0] if start else None), (min(frees) if frees else None), out


def measure(bisect=True, seconds=6, step=1024, jobs=2):
    t0 = time.monotonic()
    files = deploy_files()
    order = [m for m in LIB_MODULES] + ["board"] + firmware_modules()
    res = measure_imports(files, order)
    t = time.monotonic()
    ok, start, low, out = run_app(files, 0, seconds)
    res["lowest_free"] = low
    if not ok:
        raise BenchError("the app does not run with the whole heap:\n" + out[-4000:])
    running = re.search(r"running \(firmware .*?(\d+) bytes free\)", out)
    res["app"] = {"start_free": start, "running_free": int(running.group(1)) if running else None,
                  "lowest_free": low, "seconds_emulated": seconds,
                  "wall_s": round(time.monotonic() - t, 1)}
    held = re.search(r"^@mods (.*?)\r?$", out, re.M)
    res["held"] = measure_held(files, held.group(1).split() if held else [])
    if bisect:
        res["minimum"] = bisect_minimum(files, low, seconds, step, jobs)
    res["wall_s"] = round(time.monotonic() - t0, 1)
    return res


def bisect_minimum(files, lowest_free, seconds, step, jobs):
    """The largest filler the app still runs behind, found `jobs` boots at a time (each round
    splits the bracket in jobs + 1), to `step` bytes. A filler larger than the lowest free heap seen in a
    full-heap run leaves the app less than it held live then: that one fails, so it bounds
    the search from above (and is checked like the rest)."""
    from concurrent.futures import ThreadPoolExecutor

    lo, hi = 0, lowest_free + 256
    runs = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        # first guess: the app needs up to 16 KB more than it held live (fragmentation)
        todo = [hi, max(0, hi - 16384)]
        while True:
            for f, r in zip(todo, pool.map(lambda f: run_app(files, f, seconds)[:2], todo)):
                runs[f] = {"filler": f, "ok": r[0], "start_free": r[1]}
            if runs[hi]["ok"]:
                raise BenchError("filler %d bytes (more than the lowest free heap) did not fail" % hi)
            for f in sorted(todo):
                if runs[f]["ok"]:
                    lo = max(lo, f)
                else:
                    hi = min(hi, f)
            if hi - lo <= step:
                break
            n = min(jobs, (hi - lo) // step)
            todo = [lo + (hi - lo) * (k + 1) // (n + 1) // 64 * 64 for k in range(n)]
    ok_run = runs.get(lo)
    return {"free_before_app": ok_run["start_free"] if ok_run else None, "filler": lo,
            "failed_filler": hi, "boots": len(runs),
            "runs": [runs[f] for f in sorted(runs)]}


# The qstr-pool cliff. The names a module brings (qstrs) stay after it is dropped, in pools
# that MicroPython grows by doubling: the qstr after a full pool allocates the next pool, one
# block of twice the last one's entries, at that moment, wherever the heap is then. The probe
# below runs in the app (every uplink, its tasks running), waits `seconds`, and reads, with
# the running station's modules held: the free heap, the largest free block (mem_info's
# "max free sz", in GC blocks of 4 words) and qstr_info; then it loads and drops every use
# (qstr_uses(): each group of USES, every other firmware module alone; a held one is already
# there) in turn, as a long-lived station that has seen every kind of call and an outage, and
# reads the same after each (the tasks run `pause_ms` between uses); then it makes new names one
# at a time until the next pool comes: how many names were left, the pool's size, and whether
# it was allocated. The use groups are read from uses.txt, so that their modules' names are
# not interned before the modules are loaded; the probe's own names are in every count (the
# first point, "probe", is read before anything is imported: the probe's names and the few
# the interpreter starts with). A real station has that many more names of room.
# A pool that cannot be allocated raises MemoryError("memory allocation failed, allocating N
# bytes") where N is the pool's entries, not its bytes: 1280 on the unix port is 14,144 bytes.
# `preload` loads and drops the board libraries, the board and every use before the app
# starts (the mitigation of growing the pool while the heap is whole, measured).
_QSTR = """import gc, sys, micropython
%s
def point(tag):
    gc.collect()
    print('@qs', tag, gc.mem_free())
    micropython.mem_info()
    micropython.qstr_info()
point('probe')
import asyncio
def use(g):
    have = set(sys.modules)
    try:
        for m in g:
            __import__(m)
    except Exception as e:
        print('@error', m, repr(e))
    for m in list(sys.modules):
        if m not in have:
            del sys.modules[m]
class Names:
    pass
async def probe():
    try:
        await walk()
    except MemoryError as e:   # the probe's own allocations failed: said, and the app stopped
        print('@probe_oom', repr(e))
    raise KeyboardInterrupt
async def walk():
    await asyncio.sleep(%d)
    pause, fill = %d, %d
    print('@mods', ' '.join(sorted(sys.modules)))
    point('held')
    with open('uses.txt') as f:
        groups = f.read().split()
    for g in groups:
        g = g.split(',')
        use(g)
        await asyncio.sleep_ms(pause)
        point(','.join(g))
    o = Names()
    for i in range(fill):
        if not i %% 64:   # the tasks run (the watchdog is fed) and the garbage goes
            await asyncio.sleep_ms(10)
            gc.collect()
        n = 'zq%%d' %% i
        a = gc.mem_alloc()
        try:
            hasattr(o, n)
        except MemoryError:
            print('@poolfail', i + 1)
            break
        if gc.mem_alloc() - a > 1024:
            print('@pool', i + 1)
            point('next_pool')
            break
if %d:   # the mitigation measured: every use loaded and dropped once before the app starts
    use(%r)
    with open('uses.txt') as f:
        for g in f.read().split():
            use(g.split(','))
    point('preloaded')
""" + _RUN_APP
_QS_RE = re.compile(r"^@qs (\S+) (\d+)\r?\n(?:.*\n)*?.*max free sz: (\d+)\r?\n"
                    r"qstr pool: n_pool=(\d+), n_qstr=(\d+), n_str_data_bytes=(\d+), "
                    r"n_total_bytes=(\d+)", re.M)


# what the preload loads before the uses: the board libraries and the board module
_PRELOAD = LIB_MODULES + ("board",)


def qstr_uses():
    """Every use in turn: USES' groups, then each firmware module in none of them, alone."""
    grouped = {m for g in USES for m in g}
    return list(USES) + [(m,) for m in firmware_modules() if m not in grouped]


def _uses_txt():
    return "".join(",".join(g) + "\n" for g in qstr_uses()).encode()


def parse_qstr(out, block):
    """The probe's output as figures: each point's free heap, largest free block, qstr pools,
    and the pool a point allocated (its bytes: qstr_info's total less the names' bytes)."""
    out = out.replace("\r", "")
    points = []
    for tag, free, maxfree, n_pool, n_qstr, strb, total in _QS_RE.findall(out):
        p = {"after": tag, "free": int(free), "largest_block": int(maxfree) * block,
             "n_pool": int(n_pool), "n_qstr": int(n_qstr), "pool_bytes": int(total) - int(strb)}
        if points and p["n_pool"] > points[-1]["n_pool"]:
            p["new_pool"] = p["pool_bytes"] - points[-1]["pool_bytes"]
            # where it had to fit: the largest block before the use that allocated it
            p["room_before"] = points[-1]["largest_block"] - p["new_pool"]
        points.append(p)
    pool = re.search(r"^@pool (\d+)\r?$", out, re.M)
    fail = re.search(r"^@poolfail (\d+)\r?$", out, re.M)
    res = {"points": points, "block": block, "memory_error": "MemoryError" in out,
           "probe_oom": "@probe_oom" in out,
           "errors": re.findall(r"^@error (\S+) (.*?)\r?$", out, re.M)}
    if len(points) >= 2 and pool and points[-1]["after"] == "next_pool":
        last = points[-2]
        res["next_pool"] = {"names_left": int(pool.group(1)) - 1,
                            "bytes": points[-1]["pool_bytes"] - last["pool_bytes"],
                            "largest_block_before": last["largest_block"]}
        res["next_pool"]["room"] = last["largest_block"] - res["next_pool"]["bytes"]
    if fail:
        res["next_pool_failed_at"] = int(fail.group(1))
    return res


def measure_qstr(files=None, seconds=6, pause_ms=100, fill=4000, preload=False):
    """The qstr probe on the Pico W build (see _QSTR): the app runs `seconds`, then the uses
    are loaded and dropped with `pause_ms` of the tasks running between them, then up to
    `fill` new names are made to reach the next pool (0: not; the names are made 64 at a time
    with the tasks running between, as the watchdog needs: ~35 s of the ~75 s)."""
    t = time.monotonic()
    files = list(files or deploy_files()) + [("/uses.txt", _uses_txt())]
    out = boot(build_image(files, _QSTR % ("sys.stdin.read(1)", seconds, pause_ms, fill, preload,
                                                   _PRELOAD),
                           CONFIG),
               timeout_s=300)
    res = parse_qstr(out, 16)
    res["output"] = out
    res["wall_s"] = round(time.monotonic() - t, 1)
    return res


def measure_qstr_unix(seconds=6, heap="192K", preload=False):
    """The same probe on the unix port (the unix board, -X heapsize=`heap`), the same config
    but every host 127.0.0.1 on a port nothing listens on: each link is refused at once, so
    both backlogs open as on the Pico W with Wi-Fi down."""
    from picocharge import unixport

    sys.path.insert(0, str(ROOT / "tests"))
    from support.net import free_port

    dead = "127.0.0.1:%d" % free_port()
    cfg = json.loads(json.dumps(CONFIG).replace("192.168.1.10:9000", dead)
                     .replace("192.168.1.10:3000", dead).replace("192.168.1.10", "127.0.0.1"))
    cfg["mqtt"]["port"] = int(dead.split(":")[1])
    cfg["web"]["port"] = free_port()
    image = unixport.build_image()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "config.json").write_text(json.dumps(cfg))
        (Path(d) / "probe.py").write_text(_QSTR % ("", seconds, 100, 4000, preload, _PRELOAD))
        (Path(d) / "uses.txt").write_bytes(_uses_txt())
        r = subprocess.run([unixport.find_micropython(), "-X", "heapsize=" + heap, "probe.py"],
                           cwd=d, env=unixport.firmware_env(image), capture_output=True,
                           text=True, timeout=seconds + 120)
    out = r.stdout + r.stderr
    res = parse_qstr(out, 32)
    res["output"] = out
    return res


def qstr_report(res, name):
    lines = ["%s: qstr pools, free heap and largest free block (bytes)" % name,
             "  %-58s %5s %6s %7s %7s %s" % ("after", "pools", "qstrs", "free", "largest", "new pool")]
    for p in res["points"]:
        lines.append("  %-58s %5d %6d %7d %7d %s" % (
            p["after"][:58], p["n_pool"], p["n_qstr"], p["free"], p["largest_block"],
            "%d (room before: %d)" % (p["new_pool"], p["room_before"]) if "new_pool" in p else ""))
    n = res.get("next_pool")
    if n:
        lines.append("next pool after every use: %d names left, then %d bytes; largest free block "
                     "%d before it: room %d" % (n["names_left"], n["bytes"],
                                                n["largest_block_before"], n["room"]))
    if "next_pool_failed_at" in res:
        lines.append("next pool FAILED (MemoryError) at new name %d" % res["next_pool_failed_at"])
    if res["memory_error"] or res["errors"]:
        lines.append("MemoryError or import errors: %s" % (res["errors"],))
    return "\n".join(lines)


def report(res, unix_imported=None):
    lines = ["MicroPython v1.28.0 RPI_PICO_W in rp2040js: free heap at boot %d bytes" % res["boot_free"]]
    for m in res["modules"]:
        lines.append("  import %-16s %7d bytes  (free %d)" % (m["module"], m["cost"], m["free"]))
    lines.append("all modules imported: %d bytes (free %d)" % (res["imported"], res["after_imports"]))
    if unix_imported:
        # the unix port cannot import the Pico W board module (no machine): compare without it
        same = res["imported"] - sum(m["cost"] for m in res["modules"] if m["module"] == "board")
        lines.append("without the board module: %d bytes here, %d on the 64-bit unix port (same "
                     ".mpy files): RP2040 / unix = %.2f" % (same, unix_imported, same / unix_imported))
    h = res["held"]
    lines.append("held by a running station (%d modules): %d bytes; the largest use on top: %s, "
                 "%d bytes; together %d" % (len(h["modules"]), h["held"], "+".join(h["largest_use"]["modules"]),
                                            h["largest_use"]["cost"], h["held_and_largest_use"]))
    for g in sorted(h["uses"], key=lambda g: -g["cost"]):
        lines.append("  use %-48s %6d bytes" % ("+".join(g["modules"]), g["cost"]))
    a = res["app"]
    lines.append("app running %ds (Wi-Fi down, every uplink configured): %d free before it, %s as "
                 "its tasks started, lowest %d" % (a["seconds_emulated"], a["start_free"],
                                                    a["running_free"], a["lowest_free"]))
    if "minimum" in res:
        m = res["minimum"]
        lines.append("smallest free heap the app runs in: %s bytes (filler %d runs, %d fails; %d boots)"
                     % (m["free_before_app"], m["filler"], m["failed_filler"], m["boots"]))
    lines.append("wall time %.1f s" % res["wall_s"])
    return "\n".join(lines)


def unix_import_cost(order, files):
    """The same imports on the unix port (the `micropython` of the test extras), same .mpy files."""
    from picocharge import unixport

    try:
        exe = unixport.find_micropython()
    except Exception:  # no unix port here: the ratio is left out
        return None
    d = Path(tempfile.mkdtemp(prefix="pc-heap-"))
    try:
        for dest, data in files:
            p = d / dest.strip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        (d / "board.mpy").unlink(missing_ok=True)  # machine and network do not exist there
        code = ("import gc, sys\nsys.path.append('/lib')\nsys.path[:0] = ['', 'lib']\n"
                "gc.collect()\nf = gc.mem_free()\n"
                "for m in %r:\n    __import__(m)\ngc.collect()\nprint(f - gc.mem_free())\n"
                % ([m for m in order if m != "board"],))
        r = subprocess.run([exe, "-X", "heapsize=512K", "-c", code], cwd=d, capture_output=True,
                           text=True, timeout=60)
        return int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-bisect", action="store_true")
    ap.add_argument("--seconds", type=int, default=6, help="emulated seconds each app run lasts")
    ap.add_argument("--jobs", type=int, default=2, help="emulators run at once while bisecting")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--qstr", action="store_true",
                    help="only the qstr-pool probe, on the Pico W build and the unix port")
    ap.add_argument("--unix-heap", default="192K", help="the unix port's heap for --qstr")
    ap.add_argument("--preload", action="store_true",
                    help="--qstr with every use loaded once before the app starts")
    a = ap.parse_args()
    if a.qstr:
        res = {"rp2040": measure_qstr(seconds=a.seconds, preload=a.preload),
               "unix": measure_qstr_unix(a.seconds, a.unix_heap, a.preload)}
        for r in res.values():
            r.pop("output")
        if a.json:
            print(json.dumps(res, indent=1))
        else:
            print(qstr_report(res["rp2040"], "MicroPython v1.28.0 RPI_PICO_W in rp2040js"))
            print(qstr_report(res["unix"], "64-bit unix port, -X heapsize=%s" % a.unix_heap))
        return 0
    res = measure(not a.no_bisect, a.seconds, jobs=a.jobs)
    order = list(LIB_MODULES) + [m["module"] for m in res["modules"] if m["module"] not in LIB_MODULES]
    res["unix_imported"] = unix_import_cost(order, deploy_files())
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print(report(res, res["unix_imported"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(1)
