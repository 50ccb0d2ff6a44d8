"""`picocharge run`: the real firmware on the simulated unix board, in this terminal."""
import json
import subprocess
import sys
from pathlib import Path

import click

from . import unixport
from .paths import board_dir
from .procs import child_options, stop_on_signals, stop_process


def scenario_path(name):
    """A scenario file: a path, or the name of one shipped with the unix board."""
    if name is None:
        return None
    p = Path(name)
    if p.is_file():
        return p
    shipped = board_dir("unix") / "scenarios" / (name + ".json")
    if shipped.is_file():
        return shipped
    known = sorted(q.stem for q in (board_dir("unix") / "scenarios").glob("*.json"))
    raise click.BadParameter("no file %r and no shipped scenario of that name (shipped: %s)"
                             % (name, ", ".join(known)), param_hint="--scenario")


@click.command()
@click.option("--flash", "flash_dir", type=click.Path(file_okay=False), default=".flash/SIM-1",
              show_default=True, help="Folder standing for the board's flash (config.json, meter, journal).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="config.json to copy onto the simulated board (validated first).")
@click.option("--scenario", help="Scenario file, or a shipped one: charging, overheat, flaky.")
@click.option("--heap", default=unixport.DEFAULT_HEAP, show_default=True,
              help="MicroPython heap size (the firmware fits 192K on 64-bit, ~ the Pico W's ~100K on 32-bit; 224K leaves room for the qstr pool a station needs once it has seen most kinds of call).")
@click.option("--web-port", type=click.IntRange(0, 65535),
              help="Port of the board's status page (0: off); written into the board's config, "
                   "also when it has one already. Default for a new board: 8080.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this many seconds (default: until Ctrl-C).")
def run(flash_dir, config_file, scenario, heap, web_port, duration):
    """Run the real firmware on the simulated unix board and show its console.

    Without --config, a board that has none is given a demo config (station SIM-1, or the
    flash folder's name; status page on --web-port). Ctrl-C, SIGTERM or SIGHUP stops it.

    The firmware runs under the unix-port micropython named by $PICOCHARGE_MICROPYTHON (it
    always wins), else by $MICROPYTHON, else the first `micropython` on PATH; `picocharge
    doctor` shows which.
    """
    from .firmware import config as fwconfig

    sc = scenario_path(scenario)
    flash = Path(flash_dir)
    target = flash / "config.json"
    write = True
    if config_file:
        raw = _read_json(Path(config_file), "--config %s" % config_file, fwconfig)
    elif target.exists():
        raw = _read_json(target, "the board's config %s" % target, fwconfig, fix=(
            "edit it, give a good one with --config FILE (it replaces it), or delete it (the "
            "board then gets a demo config)"))
        write = web_port is not None
    else:
        raw = {"station_id": flash.name if fwconfig._id_char(flash.name[:1]) else "SIM-1",
               "web": {"enabled": True, "port": 8080}, "sensors": {"interval_s": 2}}
        try:
            fwconfig.validate(raw)
        except fwconfig.ConfigError:
            raw["station_id"] = "SIM-1"
    if web_port is not None:
        web = raw.setdefault("web", {})
        web["enabled"] = web_port > 0
        if web_port:
            web["port"] = web_port
    cfg = fwconfig.validate(raw)
    if write:
        flash.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(raw, indent=1))
    proc = None
    with stop_on_signals():
        try:
            # its own session: Ctrl-C reaches us, and we stop the board (like pulling its plug;
            # the firmware keeps its state on flash for exactly that)
            proc = unixport.start_firmware(flash, scenario=sc, heap=heap, stdout=None, stderr=None,
                                           **child_options())
            if cfg["web"]["enabled"]:
                click.echo("status page: http://127.0.0.1:%d/  (Ctrl-C stops)" % cfg["web"]["port"],
                           err=True)
            try:
                rc = proc.wait(duration)
            except subprocess.TimeoutExpired:   # --duration is up
                raise KeyboardInterrupt
        except unixport.NoMicroPython as e:
            raise click.ClickException(str(e))
        except KeyboardInterrupt:   # Ctrl-C, SIGTERM, SIGHUP
            stop_process(proc)
            click.echo("stopped %s" % cfg["station_id"], err=True)
            return
    if rc == 78:
        raise click.ClickException("the board refused its config (see the [config] line above)")
    sys.exit(rc if rc not in (-2, -15) else 0)


def _read_json(path, what, fwconfig, fix=None):
    """A config file's JSON object as written, checked with the firmware's schema; ClickException saying
    where it is wrong and, for the board's own file, how to fix it."""
    how = ("; " + fix) if fix else ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise click.ClickException("cannot read %s: %s%s" % (what, e.strerror or e, how))
    except ValueError as e:
        where = (" at line %d, column %d" % (e.lineno, e.colno)) if hasattr(e, "lineno") else ""
        raise click.ClickException("%s is not valid JSON%s (%s)%s" % (
            what, where, getattr(e, "msg", e), how))
    try:
        fwconfig.validate(data)
    except fwconfig.ConfigError as e:
        raise click.ClickException("%s: %s%s" % (what, e, how))
    return data
