"""`picocharge vboard`: a virtual Pico W (the unix-port micropython behind a pseudo-terminal)."""
import signal
import threading

import click

from . import unixport
from .vboard import VirtualBoard, state_dir


@click.command()
@click.option("--flash", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder standing for the board's flash (created if missing).")
@click.option("--name", help="Name shown by `picocharge devices` and accepted by -p/--port "
                             "(default: vboard-PID-FLASHNAME).")
@click.option("--state-dir", "state_dir_", type=click.Path(file_okay=False), envvar="PICOCHARGE_STATE_DIR",
              help="Where running virtual boards announce themselves. [env: PICOCHARGE_STATE_DIR]")
@click.option("--no-main", is_flag=True, help="Do not run /main.py at the first boot.")
def vboard(flash, name, state_dir_, no_main):
    """Run a virtual Pico W until Ctrl-C: the unix-port MicroPython with DIR as its flash,
    behind a pseudo-terminal that mpremote, `picocharge deploy`, `provision` and `monitor`
    use like a board's USB port.

    It answers the raw REPL, soft-reboots, runs /main.py at boot, restarts when the
    firmware asks for a reset, and appears in `picocharge devices`. The first line printed
    is the device path.

    \b
    A board with no hardware, deployed and provisioned like a real one:
      picocharge vboard --flash ./flash --name bench &
      picocharge deploy --board unix -p bench
      picocharge provision -p bench --station-id BENCH-1 --no-prompt
      picocharge monitor -p bench
    """
    try:
        unixport.find_micropython()
    except unixport.NoMicroPython as e:
        raise click.ClickException(str(e))
    b = VirtualBoard(flash, name=name, state=state_dir_, run_main=not no_main).start()
    click.echo(b.device)
    click.echo("virtual board %s on %s (flash %s; announced in %s); Ctrl-C stops"
               % (b.name, b.device, b.flash, state_dir_ or state_dir()), err=True)
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        b.stop()
