"""`picocharge monitor`: the board's console log, live, reconnecting across resets."""
import json
import time

import click

from . import device
from .options import pick_port, port_option


def _emit(port, line, as_json):
    if as_json:
        click.echo(json.dumps({"port": port, "t": round(time.time(), 3), "line": line}))
    else:
        click.echo(line)


@click.command()
@port_option
@click.option("--reset", is_flag=True,
              help="Soft-reset the board first (Ctrl-C, Ctrl-D) so the log starts at boot.")
@click.option("--duration", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop after this long (default: until Ctrl-C).")
@click.option("--reconnect-timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS", help="How long to wait for a board that went away (a reset) to come back.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: port, time, line.")
def monitor(port, reset, duration, reconnect_timeout, as_json):
    """Show the board's console live: the firmware's log lines such as "[ocpp] I: ...".

    A real board vanishes from USB while it resets; monitor waits for it to come back
    and carries on. Read-only: use `mpremote repl` to type at the board.
    """
    name = port or pick_port(None)  # a virtual board's name is looked up again on reconnect
    end = None if duration is None else time.monotonic() + duration
    partial = b""
    conn = None
    first = True
    try:
        while end is None or time.monotonic() < end:
            if conn is None:
                dev = device.resolve_port(name)
                give_up = time.monotonic() + reconnect_timeout
                while True:
                    try:
                        conn = device.open_serial(dev)
                        break
                    except device.DeviceError as e:
                        if first:
                            raise click.ClickException("%s: is the board plugged in? `picocharge devices` "
                                                       "lists boards" % e)
                        if time.monotonic() > give_up or (end is not None and time.monotonic() > end):
                            raise click.ClickException("%s did not come back within %ds: unplug and "
                                                       "replug the board" % (name, reconnect_timeout))
                        time.sleep(0.25)
                        dev = device.resolve_port(name)
                if first and reset:
                    device.write_serial(conn, b"\r\x03\x03\x02\x04")  # stop main.py, leave a raw REPL, soft reset
                if not first:
                    click.echo("[monitor] reconnected to %s" % dev, err=True)
                first = False
            try:
                data = device.read_serial(conn)
            except device.DeviceError as e:
                click.echo("[monitor] %s (board reset?); waiting for it to come back" % e, err=True)
                try:
                    conn.close()
                except OSError:
                    pass
                conn = None
                continue
            if not data:
                continue
            partial += data
            while b"\n" in partial:
                line, partial = partial.split(b"\n", 1)
                _emit(name, line.rstrip(b"\r").decode(errors="replace"), as_json)
    except KeyboardInterrupt:
        pass
    finally:
        if partial.strip():
            _emit(name, partial.rstrip(b"\r").decode(errors="replace"), as_json)
        if conn is not None:
            conn.close()
