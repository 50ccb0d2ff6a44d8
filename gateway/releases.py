"""Release bundles on the gateway (docs/ota.md): checked, stored, listed, removed.

A bundle is a folder `<version>/` holding manifest.json, manifest.sig and the files the manifest
lists; it reaches the gateway as a folder (`picocharge gateway release add DIR`) or as a tar
or zip archive (`POST /api/releases`). Either way it is checked the same: the manifest's
fields and limits, every file's name, size and SHA-256, nothing besides what the manifest
lists, no path that leaves the bundle. The HMAC in manifest.sig is checked only when the
release key is given (`--key-file`): the gateway never needs the key, the board checks it.

Stored releases live in `<db>.releases/<version>/` (folders 0700, files 0600), written to a
temporary folder first and renamed, and are indexed in the store's `releases` table.
"""
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import tarfile
import zipfile
import zlib

from .auth import beside_db
from .store import now_iso

VERSION_RE = re.compile(r"^[A-Za-z0-9._+-]{1,32}$")
FILE_RE = re.compile(r"^[A-Za-z0-9_]{1,40}\.(py|mpy)$")
BOARD_RE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{8}$")

MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
MAX_MANIFEST = 8192     # docs/ota.md: 64 entries need ~7 KB
MAX_FILES = 64
MAX_FILE = 256 * 1024
MAX_RELEASE = 512 * 1024
# a tar or zip of a release: the files, manifest and signature plus the archive's own headers
MAX_ARCHIVE = MAX_RELEASE + MAX_MANIFEST + 256 * 1024


class BundleError(ValueError):
    """What is wrong with a bundle, in words that say where and what to do."""


def releases_dir(db):
    """The folder beside database `db` that holds its releases (auth.beside_db: for a PostgreSQL
    URL, in the user's data folder; every gateway process of the host shares it)."""
    return beside_db(db, ".releases")


def version_problem(v):
    if not isinstance(v, str) or not VERSION_RE.match(v) or v in (".", ".."):
        return "a version is 1-32 characters of A-Z a-z 0-9 . _ + - (docs/ota.md)"
    return None


def file_name_ok(name):
    """Whether `name` may be asked for under /fw/<version>/."""
    return name in (MANIFEST, SIGNATURE) or bool(FILE_RE.match(name))


def check_manifest(raw):
    """The manifest (dict) from manifest.json's bytes; BundleError says what is wrong."""
    if len(raw) > MAX_MANIFEST:
        raise BundleError("manifest.json is %d bytes: at most %d (docs/ota.md)" % (len(raw), MAX_MANIFEST))
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BundleError("manifest.json is not UTF-8 JSON (%s): rebuild the release with `picocharge release "
                          "build`" % e)
    if not isinstance(m, dict):
        raise BundleError("manifest.json must be a JSON object")
    if m.get("format") != 1:
        raise BundleError("manifest.json: format %r, this gateway knows format 1" % (m.get("format"),))
    why = version_problem(m.get("version"))
    if why:
        raise BundleError("manifest.json: version %r: %s" % (str(m.get("version"))[:40], why))
    board = m.get("board")
    if board is not None and (not isinstance(board, str) or not BOARD_RE.match(board)):
        raise BundleError("manifest.json: board must be null or a board name (pico_w, unix...)")
    mpy = m.get("mpy")
    if mpy is not None and (isinstance(mpy, bool) or not isinstance(mpy, int) or not 0 <= mpy <= 255):
        raise BundleError("manifest.json: mpy must be null or the .mpy version (an integer)")
    key_id = m.get("key_id")
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise BundleError("manifest.json: key_id must be 8 lowercase hex digits (SHA-256 of the release key)")
    if not isinstance(m.get("created"), str) or len(m["created"]) > 40:
        raise BundleError("manifest.json: created must be an ISO 8601 time")
    files = m.get("files")
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_FILES:
        raise BundleError("manifest.json: files must list 1..%d files" % MAX_FILES)
    seen, total = set(), 0
    for i, f in enumerate(files):
        where = "manifest.json: files[%d]" % i
        if not isinstance(f, dict) or set(f) != {"name", "size", "sha256"}:
            raise BundleError("%s must be {\"name\", \"size\", \"sha256\"}" % where)
        name, size, sha = f["name"], f["size"], f["sha256"]
        if not isinstance(name, str) or not FILE_RE.match(name):
            raise BundleError("%s: name %r must match [A-Za-z0-9_]{1,40}.(py|mpy) (flat, no folders)"
                              % (where, str(name)[:60]))
        if name in seen:
            raise BundleError("%s: %s is listed twice" % (where, name))
        seen.add(name)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE:
            raise BundleError("%s: %s: size must be 0..%d bytes" % (where, name, MAX_FILE))
        if not isinstance(sha, str) or not _HEX64.match(sha):
            raise BundleError("%s: %s: sha256 must be 64 lowercase hex digits" % (where, name))
        total += size
    if total > MAX_RELEASE:
        raise BundleError("manifest.json: the files add up to %d bytes, at most %d (docs/ota.md)"
                          % (total, MAX_RELEASE))
    return m


def check_bundle(files, key=None):
    """The manifest of a bundle given as {name: bytes}; BundleError unless manifest.json,
    manifest.sig and exactly the listed files are there with their sizes and SHA-256 (and,
    with `key`, the HMAC matches)."""
    if MANIFEST not in files:
        raise BundleError("no manifest.json in the bundle: give the release folder made by `picocharge release "
                          "build` (it holds manifest.json, manifest.sig and the files)")
    m = check_manifest(files[MANIFEST])
    sig = files.get(SIGNATURE)
    if sig is None:
        raise BundleError("no manifest.sig in the bundle: sign the release (`picocharge release build`)")
    sig = sig.strip().decode("ascii", "replace")
    if not _HEX64.match(sig):
        raise BundleError("manifest.sig must hold 64 lowercase hex digits (HMAC-SHA256 of manifest.json)")
    if key is not None:
        if hashlib.sha256(key).hexdigest()[:8] != m["key_id"]:
            raise BundleError("the release is signed with key %s, the key file is key %s: give the release key "
                              "it was built with" % (m["key_id"], hashlib.sha256(key).hexdigest()[:8]))
        if not hmac.compare_digest(hmac.new(key, files[MANIFEST], hashlib.sha256).hexdigest(), sig):
            raise BundleError("manifest.sig does not match manifest.json under the release key: the manifest "
                              "was changed after signing, rebuild the release")
    listed = {f["name"]: f for f in m["files"]}
    extra = sorted(set(files) - set(listed) - {MANIFEST, SIGNATURE})
    if extra:
        raise BundleError("%s in the bundle but not in manifest.json: a bundle holds only what its manifest "
                          "lists" % ", ".join(extra[:5]))
    for name, f in listed.items():
        data = files.get(name)
        if data is None:
            raise BundleError("%s is in manifest.json but not in the bundle" % name)
        if len(data) != f["size"]:
            raise BundleError("%s is %d bytes, manifest.json says %d" % (name, len(data), f["size"]))
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            raise BundleError("%s: SHA-256 %s, manifest.json says %s: the file was changed or damaged"
                              % (name, hashlib.sha256(data).hexdigest(), f["sha256"]))
    return m


def _bounded_name(name):
    return name if len(name) <= 80 else name[:80] + "..."


def read_folder(folder):
    """{name: bytes} of a release folder (regular files only, bounded)."""
    if not os.path.isdir(folder):
        raise BundleError("%s is not a folder: give the release folder (manifest.json, manifest.sig, files)" % folder)
    out, total = {}, 0
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        if os.path.islink(p) or not os.path.isfile(p):
            raise BundleError("%s in the release folder is not a regular file: a bundle is flat" % name)
        size = os.path.getsize(p)
        limit = MAX_MANIFEST if name == MANIFEST else MAX_FILE
        if size > limit:
            raise BundleError("%s is %d bytes: at most %d (docs/ota.md)" % (name, size, limit))
        total += size
        if total > MAX_ARCHIVE:
            raise BundleError("the release folder holds more than %d bytes" % MAX_ARCHIVE)
        with open(p, "rb") as f:
            out[name] = f.read(limit + 1)
    return out


def _member_name(name):
    """A member's file name within the bundle: `file` or `<folder>/file`; BundleError for a path
    that could leave the bundle (absolute, `..`, deeper folders)."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0] or len([p for p in parts if p]) > 2:
        raise BundleError("archive member %r leaves the bundle folder: a bundle is <version>/<file> or <file>"
                          % _bounded_name(name))
    parts = [p for p in parts if p not in ("", ".")]
    return parts


def _add_member(out, parts, size, read, state):
    if len(parts) == 2:
        if state.setdefault("top", parts[0]) != parts[0]:
            raise BundleError("the archive holds two folders (%s, %s): one release per archive"
                              % (state["top"], parts[0]))
    name = parts[-1]
    limit = MAX_MANIFEST if name == MANIFEST else MAX_FILE
    if size > limit:
        raise BundleError("%s is %d bytes: at most %d (docs/ota.md)" % (_bounded_name(name), size, limit))
    if name in out:
        raise BundleError("%s is in the archive twice" % _bounded_name(name))
    if len(out) > MAX_FILES + 2:
        raise BundleError("the archive holds more than %d files" % (MAX_FILES + 2))
    data = read(limit + 1)
    if len(data) != size:
        raise BundleError("%s: the archive says %d bytes, it holds %d" % (_bounded_name(name), size, len(data)))
    out[name] = data


def read_archive(body):
    """{name: bytes} of a release sent as a tar (plain or gzip) or zip archive; BundleError for
    anything but regular files inside one top folder (or none), or a path escape."""
    if len(body) > MAX_ARCHIVE:
        raise BundleError("the archive is %d bytes: at most %d" % (len(body), MAX_ARCHIVE))
    out, state = {}, {}
    if body[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                if len(z.infolist()) > MAX_FILES + 8:
                    raise BundleError("the archive holds more than %d members" % (MAX_FILES + 8))
                for info in z.infolist():
                    parts = _member_name(info.filename)
                    if info.is_dir():
                        continue
                    if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                        raise BundleError("archive member %r is not a regular file" % _bounded_name(info.filename))
                    if not parts:
                        continue
                    with z.open(info) as f:
                        _add_member(out, parts, info.file_size, f.read, state)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as e:
            raise BundleError("the body is not a readable zip archive (%s)" % e)
        return out
    if body[:2] == b"\x1f\x8b":
        # gunzipped here, bounded: tarfile would inflate a small bomb into any size (a pax header
        # is read whole into memory)
        try:
            z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = z.decompress(body, MAX_ARCHIVE + 1)
        except zlib.error as e:
            raise BundleError("the body is not a readable gzip archive (%s)" % e)
        if len(body) > MAX_ARCHIVE or z.unconsumed_tail:
            raise BundleError("the archive holds more than %d bytes" % MAX_ARCHIVE)
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as t:
            for n, m in enumerate(t):
                if n > MAX_FILES + 8:
                    raise BundleError("the archive holds more than %d members" % (MAX_FILES + 8))
                parts = _member_name(m.name)
                if m.isdir():
                    continue
                if not m.isreg():
                    raise BundleError("archive member %r is not a regular file (links and devices are refused)"
                                      % _bounded_name(m.name))
                f = t.extractfile(m)
                _add_member(out, parts, m.size, f.read, state)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise BundleError("the body is not a readable tar or zip archive (%s): send the release folder as "
                          "`tar -cf - VERSION/` or a zip" % e)
    return out


def _private_dir(path):
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)


def store_files(db, files, manifest):
    """Write a checked bundle to <db>.releases/<version>/ (temporary folder, then one rename);
    the `releases` row to index it. FileExistsError when the version is stored."""
    root = releases_dir(db)
    if not os.path.isdir(root):
        _private_dir(root)
    final = os.path.join(root, manifest["version"])
    if os.path.exists(final):
        raise FileExistsError(final)
    # a folder of its own per upload: two at once (the API, the CLI) never write into one
    tmp = os.path.join(root, ".tmp-%s-%s" % (manifest["version"], secrets.token_hex(6)))
    _private_dir(tmp)
    try:
        for name, data in files.items():
            fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"version": manifest["version"], "board": manifest.get("board"), "mpy": manifest.get("mpy"),
            "key_id": manifest["key_id"], "created": manifest["created"], "files": len(manifest["files"]),
            "size": sum(f["size"] for f in manifest["files"]),
            "manifest_sha256": hashlib.sha256(files[MANIFEST]).hexdigest(), "added_at": now_iso()}


def delete_files(db, version):
    path = os.path.join(releases_dir(db), version)
    if version_problem(version) is None and os.path.isdir(path):
        shutil.rmtree(path)
        return True
    return False


def file_path(db, version, name):
    """The stored file `name` of release `version`, or None (a name /fw/ may not serve, or none)."""
    if version_problem(version) or not file_name_ok(name):
        return None
    p = os.path.join(releases_dir(db), version, name)
    return p if os.path.isfile(p) else None


def read_key_file(path):
    """The 32-byte release key from a file of 64 hex digits (`picocharge release key`)."""
    try:
        with open(path) as f:
            text = f.read(200).strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError) as e:
        raise BundleError("the release key file %s cannot be read as 64 hex digits (%s)" % (path, e))
    if len(key) != 32:
        raise BundleError("the release key file %s holds %d bytes: a release key is 32 bytes (64 hex digits, "
                          "`picocharge release key`)" % (path, len(key)))
    return key


def view(row):
    """A release as the API and the CLI show it."""
    return {k: row[k] for k in ("version", "board", "mpy", "key_id", "created", "files", "size", "added_at")}
