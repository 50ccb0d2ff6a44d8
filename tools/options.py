"""Options shared by the device commands, each with an environment-variable default."""
import json as _json
import sys

import click

from . import device, inventory


def port_option(f):
    return click.option(
        "-p", "--port", envvar="PICOCHARGE_PORT", metavar="PORT",
        help="Serial port of the board (/dev/ttyACM0, COM3) or a virtual board's name. "
             "Default: the only connected board. [env: PICOCHARGE_PORT]")(f)


def ports_option(f):
    return click.option(
        "-p", "--port", "ports", envvar="PICOCHARGE_PORT", multiple=True, metavar="PORT",
        help="Serial port(s) of the board(s); repeat for several. Default: every connected "
             "board. [env: PICOCHARGE_PORT]")(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON (for scripts).")(f)


def thingspeak_url_option(f):
    return click.option(
        "--url", "ts_url", envvar="PICOCHARGE_THINGSPEAK_URL", default="https://api.thingspeak.com",
        show_default=True, metavar="URL",
        help="ThingSpeak API base URL (a self-hosted or test server). [env: PICOCHARGE_THINGSPEAK_URL]")(f)


def _check_board(ctx, param, value):
    from .paths import board_dir

    try:
        board_dir(value)
    except FileNotFoundError as e:
        raise click.BadParameter(str(e))
    return value


def board_option(f):
    return click.option(
        "--board", envvar="PICOCHARGE_BOARD", default="pico_w", show_default=True,
        callback=_check_board,
        help="Board module to deploy: pico_w for a real Pico W, pico2_w for a Pico 2 W, unix for a "
             "virtual board. [env: PICOCHARGE_BOARD]")(f)


def _parse_sets(ctx, param, values):
    """--set KEY=VALUE items -> [(dotted key, value as the schema's type)]; a usage error
    (exit 2) for a malformed item, an unknown key or a value of the wrong type."""
    out = []
    for item in values:
        try:
            out.append(inventory.parse_set(item))
        except inventory.InventoryError as e:
            raise click.BadParameter(str(e), ctx=ctx, param=param)
    return out


def set_option(f):
    return click.option(
        "--set", "sets", multiple=True, metavar="KEY=VALUE", callback=_parse_sets,
        help="Any board config key (firmware/config.py), e.g. --set sensors.current_scale=0.0012 "
             "(repeatable).")(f)


def pick_port(port):
    """The port to use: the one given (a device or a virtual board's name), or the only board."""
    if port:
        return device.resolve_port(port)
    found = device.boards()
    if not found:
        raise click.ClickException(
            "no board found: plug a Pico W in by USB (with MicroPython on it: `picocharge flash`), "
            "or name its port with --port; `picocharge devices` lists what is connected")
    if len(found) > 1:
        raise click.ClickException(
            "%d boards connected (%s): choose one with --port" % (
                len(found), ", ".join(b["port"] for b in found)))
    return found[0]["port"]


def echo_json(obj):
    click.echo(_json.dumps(obj, indent=2, sort_keys=True))


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def progress(length, label, show=True):
    """A click progress bar on stderr (so --json stdout stays clean), or nothing."""
    if not show:
        return _NoBar()
    return click.progressbar(length=length, label=label, file=sys.stderr,
                             show_eta=False)
