"""Diagnostics files the stations upload (docs/ota.md, GetDiagnostics): received, kept, listed.

A station sends `PUT /diag/<station id>/<fileName>`; the body (at most MAX_SIZE bytes) is
streamed to `<db>.diagnostics/st-<station id>/.part-<random>-<name>` and renamed to `<name>` once it is
whole, so a listing never shows half a file. Folders 0700, files 0600; at most MAX_FILES per
station are kept (the oldest go).
"""
import asyncio
import os
import re
import secrets
import time

from .auth import beside_db

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
MAX_SIZE = 1024 * 1024
MAX_FILES = 100


class TooLarge(Exception):
    pass


def diagnostics_dir(db):
    """The folder beside database `db` that holds the stations' uploads (auth.beside_db)."""
    return beside_db(db, ".diagnostics")


def name_problem(name):
    """Why `name` cannot be a diagnostics file name (None: it can)."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name.startswith("."):
        return ("a diagnostics file name is 1-80 characters of A-Z a-z 0-9 _ . - and does not start with a dot "
                "(docs/ota.md)")
    return None


def _mkdir(path):
    if not os.path.isdir(path):
        os.makedirs(path, 0o700, exist_ok=True)
        os.chmod(path, 0o700)


def _folder(db, sid):
    # a station id may be "." or ".." (fields.station_id_error): never a folder name as it is
    return os.path.join(diagnostics_dir(db), "st-" + sid)


async def receive(db, sid, name, content, timeout, limit=MAX_SIZE):
    """Stream `content` (an aiohttp StreamReader) to the station's file `name`; its size.
    TooLarge past `limit` bytes, asyncio.TimeoutError past `timeout` seconds (nothing kept)."""
    folder = _folder(db, sid)
    _mkdir(diagnostics_dir(db))
    _mkdir(folder)
    part = os.path.join(folder, ".part-%s-%s" % (secrets.token_hex(4), name))   # two uploads at once: two parts
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            async with asyncio.timeout(timeout):
                async for chunk in content.iter_chunked(65536):
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge()
                    f.write(chunk)
        os.replace(part, os.path.join(folder, name))
    except BaseException:
        try:
            os.unlink(part)
        except OSError:
            pass
        raise
    _trim(folder)
    return size


def _trim(folder):
    rows = listing_of(folder)
    for r in rows[MAX_FILES:]:
        try:
            os.unlink(os.path.join(folder, r["name"]))
        except OSError:
            pass


def listing_of(folder):
    out = []
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for n in names:
        if n.startswith("."):
            continue
        try:
            st = os.stat(os.path.join(folder, n))
        except OSError:
            continue
        out.append({"name": n, "size": st.st_size,
                    "received": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
                    "_mtime": st.st_mtime_ns})
    out.sort(key=lambda r: (-r["_mtime"], r["name"]))
    for r in out:
        del r["_mtime"]
    return out


def listing(db, sid):
    """[{name, size, received}] of a station's diagnostics files, newest first."""
    return listing_of(_folder(db, sid))


def path_of(db, sid, name):
    """The file of a station's diagnostics `name`, or None."""
    if name_problem(name):
        return None
    p = os.path.join(_folder(db, sid), name)
    return p if os.path.isfile(p) else None
