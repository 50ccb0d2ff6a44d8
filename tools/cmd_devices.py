"""`picocharge devices`: the boards connected by USB and the running virtual boards."""
import click

from . import device
from .options import echo_json, json_option


@click.command()
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Ask each board for its id, MicroPython and PicoCharge firmware versions and station id (this interrupts "
                   "and restarts its firmware: a soft reset).")
@json_option
def devices(probe, as_json):
    """List connected boards: Pico W boards on USB (Raspberry Pi vendor id 0x2E8A) and
    running virtual boards (picocharge vboard), with their unique ids, MicroPython
    and PicoCharge firmware versions (FIRMWARE is "-" until `picocharge deploy` has put the
    firmware on the board) and provisioned station ids."""
    rows = []
    for b in device.boards():
        row = dict(b, uid="", micropython="", firmware="", station_id="", error="")
        if probe:
            try:
                with device.Board(b["port"]) as d:
                    info = d.info()
                    d.reboot()
                row.update(uid=info["uid"], micropython=info["version"], firmware=info.get("firmware", ""),
                           station_id=info["station_id"])
            except device.DeviceError as e:
                row["error"] = str(e)
        rows.append(row)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no boards found: plug a Pico W in by USB (`picocharge flash` puts MicroPython on "
                   "a new one), or start a virtual board: picocharge vboard --flash DIR")
        return
    fmt = "%-16s %-8s %-18s %-12s %-10s %-12s %s"
    click.echo(fmt % ("PORT", "KIND", "NAME/ID", "MICROPYTHON", "FIRMWARE", "STATION", ""))
    for r in rows:
        click.echo(fmt % (
            r["port"], r["kind"], r["uid"] or r["name"], r["micropython"] or "-", r["firmware"] or "-",
            r["station_id"] or "-",
            ("! " + r["error"]) if r["error"] else ""))
