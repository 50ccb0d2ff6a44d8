"""`picocharge flash`: put MicroPython on a Pico W through its UF2 bootloader drive."""
import glob
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from . import device, uf2
from .options import echo_json, json_option, progress
from .paths import cache_dir

# The official MicroPython release for the Pico W (https://micropython.org/download/RPI_PICO_W/)
DEFAULT_URL = "https://micropython.org/resources/firmware/RPI_PICO_W-20241129-v1.24.1.uf2"
DOWNLOAD_PAGE = "https://micropython.org/download/RPI_PICO_W/"
DRIVE_GLOBS = ("/media/*/RPI-RP2", "/media/RPI-RP2", "/run/media/*/RPI-RP2", "/Volumes/RPI-RP2",
               "/mnt/RPI-RP2")


def is_drive(path):
    return Path(path, "INFO_UF2.TXT").is_file()


def find_drives():
    """Mounted RPI-RP2 bootloader drives (folders holding INFO_UF2.TXT)."""
    out = []
    for pattern in DRIVE_GLOBS:
        out += [p for p in sorted(glob.glob(pattern)) if is_drive(p)]
    return out


def drive_info(path):
    """INFO_UF2.TXT as a dict ("Model", "Board-ID", ...)."""
    info = {}
    for line in Path(path, "INFO_UF2.TXT").read_text(errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def download(url, timeout=30):
    """The UF2 image at `url`, from the cache or downloaded into it. Only an image that passes
    uf2.check is cached (a truncated download or an error page would otherwise be reused on
    every run); a bad file found in the cache is fetched again."""
    name = url.rstrip("/").rsplit("/", 1)[-1] or "firmware.uf2"
    dest = cache_dir() / "uf2" / name
    if dest.is_file():
        try:
            uf2.check(dest.read_bytes())
            return dest
        except uf2.UF2Error:
            dest.unlink()
    device._trace(("http", "GET", url))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
    except (urllib.error.URLError, OSError) as e:
        raise click.ClickException(
            "cannot download MicroPython for the Pico W from %s (%s). No internet here? On a machine "
            "that has it, download the RPI_PICO_W .uf2 from %s and pass it with --uf2 FILE"
            % (url, getattr(e, "reason", e), DOWNLOAD_PAGE))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    tmp.write_bytes(data)
    try:
        uf2.check(tmp.read_bytes())
    except uf2.UF2Error as e:
        tmp.unlink()
        raise click.ClickException(
            "the download from %s is not a valid RP2040 UF2 image (%s); nothing was cached or "
            "copied. Run this again, check --download-url, or download the RPI_PICO_W .uf2 from %s "
            "and pass it with --uf2 FILE" % (url, e, DOWNLOAD_PAGE))
    tmp.replace(dest)
    return dest


def _wait_drive(drive, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if drive and is_drive(drive):
            return drive
        if not drive:
            found = find_drives()
            if found:
                return found[0]
        time.sleep(0.25)
    return None


def _wait_board(before, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for b in device.boards():
            if b["port"] not in before:
                return b["port"]
        time.sleep(0.25)
    return None


@click.command()
@click.option("--uf2", "uf2_file", type=click.Path(exists=True, dir_okay=False),
              help="MicroPython .uf2 image to flash (default: download the official release).")
@click.option("--download-url", envvar="PICOCHARGE_UF2_URL", default=DEFAULT_URL, show_default=True,
              metavar="URL", help="Where to download the image from when no --uf2 is given. "
                                  "[env: PICOCHARGE_UF2_URL]")
@click.option("--drive", envvar="PICOCHARGE_UF2_DRIVE", type=click.Path(file_okay=False),
              help="The board's RPI-RP2 drive (default: search /media/*/RPI-RP2, /media/RPI-RP2, "
                   "/run/media/*/RPI-RP2, /Volumes/RPI-RP2, /mnt/RPI-RP2). [env: PICOCHARGE_UF2_DRIVE]")
@click.option("-p", "--port", envvar="PICOCHARGE_PORT",
              help="A running board to reboot into its bootloader when no drive is mounted "
                   "(default: the only connected board). [env: PICOCHARGE_PORT]")
@click.option("--wait", "wait_s", type=click.IntRange(0, 600), default=30, show_default=True,
              help="Seconds to wait for the drive, and then for the board to come back (0: don't).")
@click.option("--check-only", is_flag=True, help="Validate the UF2 image and stop.")
@json_option
def flash(uf2_file, download_url, drive, port, wait_s, check_only, as_json):
    """Put MicroPython on a Pico W.

    Hold BOOTSEL while plugging the board in (it mounts as a drive named RPI-RP2), or let
    this command ask a board already running MicroPython to enter its bootloader. The
    image is checked to be a UF2 for the RP2040's flash (magic numbers, family id, block
    numbering, addresses) before it is copied; then the board reboots, and its MicroPython
    version is reported once it is back as a serial device.

    \b
    Examples:
      picocharge flash                          # download the official release
      picocharge flash --uf2 RPI_PICO_W-20241129-v1.24.1.uf2
      picocharge flash --uf2 fw.uf2 --drive /media/me/RPI-RP2
    """
    path = Path(uf2_file) if uf2_file else download(download_url)
    data = path.read_bytes()
    try:
        summary = uf2.check(data)
    except uf2.UF2Error as e:
        raise click.ClickException("%s is not a valid RP2040 UF2 image: %s. Use the RPI_PICO_W "
                                   "image from %s" % (path, e, DOWNLOAD_PAGE))
    result = {"uf2": str(path), "blocks": summary["blocks"], "bytes": summary["bytes"],
              "start": "0x%08X" % summary["start"], "end": "0x%08X" % summary["end"]}
    if check_only:
        if as_json:
            echo_json(dict(result, valid=True))
        else:
            click.echo("%s: valid RP2040 UF2 image, %d blocks, flash 0x%08X..0x%08X" % (
                path, summary["blocks"], summary["start"], summary["end"]))
        return

    target = drive if drive and is_drive(drive) else None
    if target is None and not drive:
        found = find_drives()
        if len(found) > 1:
            raise click.ClickException("%d RPI-RP2 drives mounted (%s): choose one with --drive"
                                       % (len(found), ", ".join(found)))
        target = found[0] if found else None
    if target is None:
        # no drive yet: ask a running board to reboot into its bootloader
        running = [device.resolve_port(port)] if port else [b["port"] for b in device.serial_boards()]
        if len(running) != 1:
            raise click.ClickException(
                "no RPI-RP2 drive found%s: hold the BOOTSEL button while plugging the Pico W in, then "
                "run this again (or name the mounted drive with --drive, or a running board with "
                "--port)" % ((" at %s" % drive) if drive else ""))
        try:
            device.bootloader(running[0])
        except device.DeviceError as e:
            raise click.ClickException(str(e))
        if not as_json:
            click.echo("asked the board on %s to enter its bootloader; waiting for the drive" % running[0])
        target = _wait_drive(drive, max(wait_s, 1))
        if target is None:
            raise click.ClickException("no RPI-RP2 drive appeared within %ds: hold BOOTSEL while "
                                       "plugging the board in, then run this again" % max(wait_s, 1))
    info = drive_info(target)
    board_id = info.get("Board-ID", "")
    if board_id and not board_id.startswith("RPI-RP2"):
        raise click.ClickException("%s is a UF2 drive for %r, not an RP2040 (Board-ID RPI-RP2): "
                                   "is this the right board?" % (target, board_id))
    before = {b["port"] for b in device.boards()}
    dest = Path(target) / path.name
    try:
        with open(dest, "wb") as f, progress(len(data), "Flashing %s" % target, not as_json) as bar:
            for i in range(0, len(data), 64 * 1024):
                f.write(data[i:i + 64 * 1024])
                bar.update(min(64 * 1024, len(data) - i))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise click.ClickException("copying to %s failed (%s): the board reboots when the copy "
                                   "completes; if it vanished early, put it in BOOTSEL mode and "
                                   "run this again" % (target, e.strerror or e))
    result.update(drive=str(target), port=None, micropython=None)
    if not as_json:
        click.echo("copied %s (%d blocks) to %s; the board is rebooting" % (path.name, summary["blocks"], target))
    if wait_s:
        new = _wait_board(before, wait_s)
        if new is None:
            raise click.ClickException(
                "the board did not come back as a serial device within %ds: unplug and replug it; "
                "`picocharge devices` lists boards" % wait_s)
        try:
            with device.Board(new, soft_reset=False) as b:
                binfo = b.info()
        except device.DeviceError as e:
            raise click.ClickException(str(e))
        result.update(port=new, micropython=binfo["version"])
        if not as_json:
            click.echo("MicroPython %s is running on %s" % (binfo["version"], new))
    if as_json:
        echo_json(result)
