# The firmware application, wiring only: the board, the validated config, the shared state
# and one asyncio task per concern (wifi, sample with safety, ocpp, thingspeak, mqtt, web,
# watchdog), each restarted by guarded() if it ever raises.
import asyncio
import gc
import json

import log
from state import State
from version import VERSION

_L = log.get("app")
_EXIT_CONFIG = 78  # EX_CONFIG: the code a board shows for a bad config


class Ctx:
    def __init__(self, board, cfg):
        self.board = board
        self.cfg = cfg
        self.state = State()
        self.fw_version = VERSION
        self.wifi_up = asyncio.Event()
        # task name -> function called when the Wi-Fi link drops (sockets over it are dead);
        # keyed, so a task restarted by guarded() replaces its own rather than adding one
        self.on_wifi_lost = {}
        self.cp = None      # the OCPP charge point (chargepoint.py) when there is one
        # uplink name -> its backlog on flash (flashq.FlashQ), while it has readings waiting
        self.backlogs = {}


async def watchdog_task(ctx):
    ctx.board.wdt_start(8000)
    while True:
        ctx.board.wdt_feed()
        await asyncio.sleep(2)


async def guarded(name, coro_fn, ctx):
    """Run a task's loop; if it ever raises, log it and start it again after a pause. Never
    raises itself: when the heap is exhausted the log line may not fit (a MemoryError from
    formatting it once ended the web task for good), so that is said without allocating."""
    while True:
        try:
            await coro_fn(ctx)
        except Exception as e:
            try:
                _L.error("task %s crashed: %r; restarting in 5s", name, e)
            except Exception:
                gc.collect()
                try:
                    print("[app] E: a task crashed (no memory to say more); restarting in 5s")
                except Exception:
                    pass
        gc.collect()
        await asyncio.sleep(5)


async def run(ctx):
    import sys
    import app_tasks  # boot only: dropped once the tasks are made

    ts = app_tasks.tasks(ctx)
    del app_tasks
    sys.modules.pop("app_tasks", None)
    for name, fn in ts:
        asyncio.create_task(guarded(name, fn, ctx))
        gc.collect()
    del ts
    # Collect after every quarter of the free heap is allocated instead of only when an
    # allocation fails: short-lived blocks (frames, JSON) are freed before they spread over
    # the heap, so long runs keep room for larger blocks (MicroPython's own advice for
    # fragmentation; without it the 192K run sometimes failed a 392-byte allocation).
    gc.threshold(gc.mem_free() // 4)
    _L.info("station %s running (firmware %s, board %s, %d bytes free)",
            ctx.cfg["station_id"], VERSION, ctx.board.name, gc.mem_free())
    while True:
        await asyncio.sleep(3600)


def main():
    import board as board_mod

    b = board_mod.Board()
    cfg = load_config(b)
    log.set_level(cfg["log_level"])
    gc.collect()
    try:
        asyncio.run(run(Ctx(b, cfg)))
    except KeyboardInterrupt:  # Ctrl-C over USB (mpremote): open the relay, back to the REPL
        # An RP2040 watchdog cannot be stopped by machine.WDT: left running unfed, it would
        # reset the board ~8 s later, in the middle of a deploy. The board switches it off.
        try:
            b.relay(False)
            b.wdt_stop()
            _L.info("stopped (Ctrl-C), relay opened, watchdog stopped")
        except MemoryError:  # the heap may be locked (the unix port can take the interrupt
            # inside a collection): the board's two steps do not allocate, the log line does
            b.relay(False)
            b.wdt_stop()


def load_config(b):
    """The validated config, or halt the board naming the bad key. The schema (~12 KB of
    heap on 64 bit) is needed only here: it is dropped once the config is checked."""
    import config

    try:
        cfg = config.load()
    except config.ConfigError as e:
        print("[config] E: %s" % e)
        halt(b)
    _L.info("config: %s", json.dumps(config.redact(cfg)))
    kb = cfg["ota"]["diag_kb"]
    import sys
    # the log ring GetDiagnostics uploads, in logs/ (a folder named like a module, log/, would
    # be imported as a package in its place); the config's secrets are masked in it
    if kb:
        import logring
        logring.start("logs", kb * 1024, config.secrets(cfg))
        sys.modules.pop("logring", None)
    del config
    sys.modules.pop("config", None)
    return cfg


def halt(b):
    """Bad config: the board shows it (LED blink code on a Pico W; exit 78 on the unix port)."""
    b.halt(_EXIT_CONFIG)
