"""The `picocharge` command: one click group, one module per verb, loaded on demand."""
import importlib
import importlib.util

import click

from . import __version__

# verb -> "module:attribute" (module relative to the picocharge package).
# A verb whose module is not there is not listed: no placeholder commands.
COMMANDS = {
    "run": "cmd_run:run",
    "flash": "cmd_flash:flash",
    "deploy": "cmd_deploy:deploy",
    "provision": "cmd_provision:provision",
    "thingspeak": "cmd_thingspeak:thingspeak",
    "devices": "cmd_devices:devices",
    "vboard": "cmd_vboard:vboard",
    "monitor": "cmd_monitor:monitor",
    "doctor": "cmd_doctor:doctor",
    "sim": "cmd_sim:sim",
    "gateway": "gateway.cli:gateway",
    "demo": "cmd_demo:demo",
    "bench": "cmd_bench:bench",
    "release": "release:release",
}


def _available(name):
    mod = COMMANDS[name].split(":")[0]
    try:
        return importlib.util.find_spec("picocharge." + mod) is not None
    except ModuleNotFoundError:
        return False


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(n for n in COMMANDS if _available(n))

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _available(name):
            return None
        mod, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module("picocharge." + mod), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="picocharge")
def cli():
    """PicoCharge: run, flash, deploy, provision and watch Pico W EV charging stations.

    Run `picocharge COMMAND --help` for the details of each command.
    """


def main():
    cli(prog_name="picocharge")


if __name__ == "__main__":
    main()
