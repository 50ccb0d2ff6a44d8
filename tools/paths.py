"""Where the firmware, board modules and caches live, in a checkout or an installed wheel."""
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _package_dir(name):
    """Folder of the data package ``picocharge.<name>`` (works for checkouts and wheels)."""
    import importlib.util

    spec = importlib.util.find_spec("picocharge." + name)
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return _HERE.parent / name  # running from a checkout without install


def firmware_dir() -> Path:
    return _package_dir("firmware")


def boards_dir() -> Path:
    return _package_dir("boards")


def board_dir(board: str) -> Path:
    d = boards_dir() / board
    if not (d / "board.py").is_file():
        known = sorted(p.name for p in boards_dir().iterdir() if (p / "board.py").is_file())
        raise FileNotFoundError("no board %r; known boards: %s" % (board, ", ".join(known)))
    return d


def firmware_files():
    """The firmware's own modules, as (name on board, local path)."""
    return sorted((p.name, p) for p in firmware_dir().glob("*.py") if p.name != "__init__.py")


def cache_dir() -> Path:
    d = os.environ.get("PICOCHARGE_CACHE")
    if d:
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "picocharge"


def publish_dir(tmp: Path, out: Path, done) -> Path:
    """Put the finished folder `tmp` in place as `out`, safely when several processes (test
    workers, simulated stations) build the same cache entry at once: if another one has put a
    finished copy there first (`done(out)` is true) ours is discarded, and a finished copy that
    a running firmware may be reading is never deleted under it. An unfinished or outdated `out`
    is moved aside first, then removed."""
    import shutil

    if done(out):
        shutil.rmtree(tmp, ignore_errors=True)
        return out
    aside = out.with_name("%s.old%d" % (out.name, os.getpid()))
    try:
        os.replace(out, aside)
    except FileNotFoundError:
        aside = None
    except OSError:   # another process is swapping it right now: fall through and look again
        aside = None
    try:
        os.replace(tmp, out)
    except OSError:
        if not done(out):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return out
