"""`picocharge run`: the real firmware on the simulated unix board, in this terminal."""
import json
import sys
from pathlib import Path

import click

from . import unixport
from .paths import board_dir
from .procs import stop_on_signals, stop_process


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
              help="MicroPython heap size (192K on 64-bit ~ the Pico W's ~100K on 32-bit).")
@click.option("--web-port", type=int, default=8080, show_default=True,
              help="Port of the board's status page when no config is given (0: off).")
def run(flash_dir, config_file, scenario, heap, web_port):
    """Run the real firmware on the simulated unix board and show its console.

    Without --config, a board that has none is given a demo config (station SIM-1,
    status page on --web-port). Ctrl-C, SIGTERM or SIGHUP stops it.
    """
    from .firmware import config as fwconfig

    flash = Path(flash_dir)
    flash.mkdir(parents=True, exist_ok=True)
    target = flash / "config.json"
    if config_file:
        try:
            cfg = fwconfig.validate(json.loads(Path(config_file).read_text()))
        except ValueError as e:
            raise click.ClickException("%s: %s" % (config_file, e))
        target.write_text(json.dumps(cfg, indent=1))
    elif not target.exists():
        cfg = {"station_id": flash.name if fwconfig._id_char(flash.name[:1]) else "SIM-1",
               "web": {"enabled": web_port > 0, "port": web_port}, "sensors": {"interval_s": 2}}
        try:
            fwconfig.validate(cfg)
        except fwconfig.ConfigError:
            cfg["station_id"] = "SIM-1"
        target.write_text(json.dumps(cfg, indent=1))
    try:
        cfg = fwconfig.load(str(target))
    except fwconfig.ConfigError as e:
        raise click.ClickException("%s: %s" % (target, e))
    sc = scenario_path(scenario)
    proc = None
    with stop_on_signals():
        try:
            # its own session: Ctrl-C reaches us, and we stop the board (like pulling its plug;
            # the firmware keeps its state on flash for exactly that)
            proc = unixport.start_firmware(flash, scenario=sc, heap=heap, stdout=None, stderr=None,
                                           start_new_session=True)
            if cfg["web"]["enabled"]:
                click.echo("status page: http://127.0.0.1:%d/  (Ctrl-C stops)" % cfg["web"]["port"],
                           err=True)
            rc = proc.wait()
        except unixport.NoMicroPython as e:
            raise click.ClickException(str(e))
        except KeyboardInterrupt:   # Ctrl-C, SIGTERM, SIGHUP
            stop_process(proc)
            click.echo("stopped %s" % cfg["station_id"], err=True)
            return
    if rc == 78:
        raise click.ClickException("the board refused its config (see the [config] line above)")
    sys.exit(rc if rc not in (-2, -15) else 0)
