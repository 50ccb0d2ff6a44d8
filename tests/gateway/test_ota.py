"""Over-the-air updates and diagnostics on the gateway (docs/ota.md, issue 12): releases checked and
stored (CLI and API), served to authenticated stations only, UpdateFirmware to one station followed
to Installed, diagnostics requested, received, listed and downloaded. Stations are
support.otaboard.OtaBoard (ocpp-package charge points following the board's side of the contract)."""
import asyncio
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile

import pytest

from support.cli import run_cli
from support.gwhttp import http
from support.otaboard import KEY, OtaBoard, basic, make_bundle, tar_of, write_key

PW = {"CP-1": "password-of-cp-1-xx", "CP-2": "password-of-cp-2-xx"}


async def _gw(gateway, tmp_path, **kw):
    gw = await gateway(auth="password", **kw)
    for sid, pw in PW.items():
        await gw.register(sid, pw)
    return gw


async def _add(gw, bundle):
    s, out = await http(gw, "POST", "/api/releases", raw=tar_of(bundle), headers={
        "Authorization": "Bearer " + gw.settings.api_token, "Content-Type": "application/x-tar"})
    return s, out


async def _get(port, path, headers=None, method="GET", data=None):
    """(status, headers, body bytes) of a request with exactly `headers` (no API token added)."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method, headers=headers or {},
                                 data=data)

    def go():
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()
    return await asyncio.get_running_loop().run_in_executor(None, go)


async def test_ota__release_over_the_api_is_stored_private_and_listed(gateway, tmp_path):
    gw = await _gw(gateway, tmp_path)
    bundle = make_bundle(tmp_path / "b", "0.2.0")
    s, out = await _add(gw, bundle)
    assert s == 201, out
    assert out == {"version": "0.2.0", "board": None, "mpy": None, "key_id": hashlib.sha256(KEY).hexdigest()[:8],
                   "created": "2026-11-30T18:00:00Z", "files": 2,
                   "size": sum(len((bundle / n).read_bytes()) for n in ("main.py", "app.py")),
                   "added_at": out["added_at"]}, out
    s, rows = await http(gw, "GET", "/api/releases")
    assert (s, [r["version"] for r in rows]) == (200, ["0.2.0"]), rows
    folder = gw.settings.db + ".releases"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(folder, "0.2.0")).st_mode) == 0o700
    for n in ("manifest.json", "manifest.sig", "main.py", "app.py"):
        p = os.path.join(folder, "0.2.0", n)
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
        assert open(p, "rb").read() == (bundle / n).read_bytes(), n
    s, out = await _add(gw, bundle)
    assert (s, out) == (409, {"error": "release 0.2.0 is already on this gateway: remove it first "
                                       "(DELETE /api/releases/0.2.0)"}), out
    s, out = await http(gw, "DELETE", "/api/releases/0.2.0")
    assert (s, out) == (200, {"version": "0.2.0", "removed": True}), out
    assert not os.path.exists(os.path.join(folder, "0.2.0"))
    # a read token may list, not add
    tok, _row = gw.tokens.create("operate")
    s, out = await http(gw, "POST", "/api/releases", raw=tar_of(bundle),
                        headers={"Authorization": "Bearer " + tok, "Content-Type": "application/x-tar"})
    assert s == 403 and "needs admin" in out["error"], out


def _tar_with(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def test_ota__release_refusals_say_what_is_wrong(gateway, tmp_path):
    gw = await _gw(gateway, tmp_path)
    good = make_bundle(tmp_path / "good", "0.3.0")
    files = {p.name: p.read_bytes() for p in good.iterdir()}
    cases = []
    bad_sha = make_bundle(tmp_path / "sha", "0.3.1")
    size = len((bad_sha / "app.py").read_bytes())
    (bad_sha / "app.py").write_bytes(b"VERSION = 'tampered'\n"[:size].ljust(size, b"#"))   # same size
    cases.append(("bad sha", tar_of(bad_sha), 400, "release refused: app.py: SHA-256 "))
    cases.append(("path escape", _tar_with([("0.3.0/manifest.json", files["manifest.json"], "file"),
                                            ("0.3.0/../../evil.py", b"x", "file")]), 400,
                  "release refused: archive member '0.3.0/../../evil.py' leaves the bundle folder"))
    cases.append(("absolute", _tar_with([("/tmp/evil.py", b"x", "file")]), 400,
                  "release refused: archive member '/tmp/evil.py' leaves the bundle folder"))
    cases.append(("symlink", _tar_with([("0.3.0/main.py", None, "link")]), 400,
                  "release refused: archive member '0.3.0/main.py' is not a regular file"))
    big = make_bundle(tmp_path / "big", "0.3.2", files={"main.py": b"#" * (256 * 1024 + 1)})
    cases.append(("oversize file", tar_of(big), 400, "release refused: main.py is 262145 bytes: at most 262144"))
    many = make_bundle(tmp_path / "many", "0.3.3", files={"f%d.py" % i: b"#" * (200 * 1024) for i in range(3)})
    cases.append(("oversize release", tar_of(many), 400, "release refused: manifest.json: the files add up to "
                                                         "614400 bytes, at most 524288"))
    extra = make_bundle(tmp_path / "extra", "0.3.4")
    (extra / "boot.py").write_bytes(b"import os\n")
    cases.append(("not listed", tar_of(extra), 400, "release refused: boot.py in the bundle but not in manifest.json"))
    badver = make_bundle(tmp_path / "ver", "0.3.5", manifest={"version": "../../x"})
    cases.append(("version", tar_of(badver), 400, "release refused: manifest.json: version '../../x': a version"))
    cases.append(("not an archive", b"hello", 400, "release refused: the body is not a readable tar or zip"))
    cases.append(("gzip bomb", gzip.compress(b"\0" * (64 * 1024 * 1024)), 400,
                  "release refused: the archive holds more than %d bytes" % releases.MAX_ARCHIVE))
    for what, body, status, start in cases:
        s, out = await http(gw, "POST", "/api/releases", raw=body, headers={
            "Authorization": "Bearer " + gw.settings.api_token, "Content-Type": "application/x-tar"})
        assert s == status and out["error"].startswith(start), (what, s, out)
    s, out = await http(gw, "POST", "/api/releases", raw=b"\0" * (3 * 1024 * 1024), headers={
        "Authorization": "Bearer " + gw.settings.api_token, "Content-Type": "application/x-tar"})
    assert s == 413, (s, out)
    assert not [n for n in os.listdir(gw.settings.db + ".releases")] if os.path.exists(
        gw.settings.db + ".releases") else True
    s, rows = await http(gw, "GET", "/api/releases")
    assert rows == [], rows


async def test_ota__release_as_tar_gz_and_as_zip(gateway, tmp_path):
    gw = await _gw(gateway, tmp_path)
    bundle = make_bundle(tmp_path / "b", "0.4.0")
    s, out = await http(gw, "POST", "/api/releases", raw=gzip.compress(tar_of(bundle)), headers={
        "Authorization": "Bearer " + gw.settings.api_token, "Content-Type": "application/gzip"})
    assert (s, out["version"], out["files"]) == (201, "0.4.0", 2), out
    flat = make_bundle(tmp_path / "z", "0.4.1")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(flat.iterdir()):
            z.write(p, p.name)          # no top folder: the files alone
    s, out = await http(gw, "POST", "/api/releases", raw=buf.getvalue(), headers={
        "Authorization": "Bearer " + gw.settings.api_token, "Content-Type": "application/zip"})
    assert (s, out["version"]) == (201, "0.4.1"), out
    s, rows = await http(gw, "GET", "/api/releases")
    assert sorted(r["version"] for r in rows) == ["0.4.0", "0.4.1"], rows


def test_ota__cli_release_add_list_remove_and_refusals(tmp_path):
    db = str(tmp_path / "gw.db")
    good = make_bundle(tmp_path / "b", "1.0.0")
    key = write_key(tmp_path / "release.key")
    other = write_key(tmp_path / "other.key", bytes(32))
    r = run_cli("gateway", "release", "add", str(good), "--db", db, "--key-file", str(other))
    assert r.returncode == 1 and "release refused: the release is signed with key %s, the key file is key %s" % (
        hashlib.sha256(KEY).hexdigest()[:8], hashlib.sha256(bytes(32)).hexdigest()[:8]) in r.stderr, r.stderr
    tampered = make_bundle(tmp_path / "t", "1.0.1")
    raw = json.loads((tampered / "manifest.json").read_text())
    raw["created"] = "2026-12-01T00:00:00Z"
    (tampered / "manifest.json").write_text(json.dumps(raw))
    r = run_cli("gateway", "release", "add", str(tampered), "--db", db, "--key-file", str(key))
    assert r.returncode == 1 and "manifest.sig does not match manifest.json under the release key" in r.stderr, \
        r.stderr
    shaed = make_bundle(tmp_path / "s", "1.0.2")
    (shaed / "main.py").write_bytes(b"import app\napp.run()\n".replace(b"run", b"RUN"))
    r = run_cli("gateway", "release", "add", str(shaed), "--db", db)
    assert r.returncode == 1 and "release refused: main.py: SHA-256 " in r.stderr and \
        "the file was changed or damaged" in r.stderr, r.stderr
    r = run_cli("gateway", "release", "add", str(good), "--db", db, "--key-file", str(key), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == "1.0.0", r.stdout
    r = run_cli("gateway", "release", "list", "--db", db, "--json")
    assert [x["version"] for x in json.loads(r.stdout)] == ["1.0.0"], r.stdout
    assert stat.S_IMODE(os.stat(db + ".releases/1.0.0/main.py").st_mode) == 0o600
    r = run_cli("gateway", "release", "add", str(good), "--db", db)
    assert r.returncode == 1 and "release 1.0.0 is already in" in r.stderr, r.stderr
    r = run_cli("gateway", "release", "remove", "1.0.0", "--db", db)
    assert r.returncode == 0 and not os.path.exists(db + ".releases/1.0.0"), r.stderr
    r = run_cli("gateway", "release", "list", "--db", db, "--json")
    assert json.loads(r.stdout) == [], r.stdout


async def test_ota__releases_are_served_to_authenticated_stations_only(gateway, tmp_path):
    gw = await _gw(gateway, tmp_path, auth_fail_limit=5)
    bundle = make_bundle(tmp_path / "b", "0.2.0")
    assert (await _add(gw, bundle))[0] == 201
    path = "/fw/0.2.0/app.py"
    s, h, body = await _get(gw.port, path)
    assert s == 401 and h["WWW-Authenticate"].startswith("Basic") and b"station credentials required" in body, (s, body)
    s, h, body = await _get(gw.port, path, {"Authorization": basic("CP-1", "wrong-password-1234")})
    assert s == 401, (s, body)
    s, h, body = await _get(gw.port, path, {"Authorization": basic("CP-9", PW["CP-1"])})
    assert s == 401, (s, body)
    s, h, body = await _get(gw.port, path, {"Authorization": "Bearer " + gw.settings.api_token})
    assert s == 401, (s, body)      # an API token is not a station's credential
    for name in ("manifest.json", "manifest.sig", "app.py", "main.py"):
        s, h, body = await _get(gw.port, "/fw/0.2.0/" + name, {"Authorization": basic("CP-2", PW["CP-2"])})
        assert (s, body) == (200, (bundle / name).read_bytes()), (name, s, body[:200])
        assert h["Content-Length"] == str(len(body)), h
    s, h, body = await _get(gw.port, "/fw/0.2.0/other.py", {"Authorization": basic("CP-2", PW["CP-2"])})
    assert s == 404 and json.loads(body) == {"error": "no file other.py in a release 0.2.0 on this gateway"}, body
    s, h, body = await _get(gw.port, "/fw/0.9.9/app.py", {"Authorization": basic("CP-2", PW["CP-2"])})
    assert s == 404, body
    s, h, body = await _get(gw.port, "/fw/0.2.0/..%2F..%2Fgw.db", {"Authorization": basic("CP-2", PW["CP-2"])})
    assert s == 404, body
    # a station the operator rejected fetches nothing
    await gw.set_state("CP-2", "rejected")
    s, h, body = await _get(gw.port, path, {"Authorization": basic("CP-2", PW["CP-2"])})
    assert s == 403, body
    # failed attempts slow the address down as on /ocpp/ (5 a minute here, 10x for an address)
    for _ in range(60):
        s, h, body = await _get(gw.port, path, {"Authorization": basic("CP-1", "wrong-password-1234")})
        if s == 429:
            break
    assert s == 429, (s, body)
    s, h, body = await _get(gw.port, path, {"Authorization": basic("CP-1", PW["CP-1"])})
    assert s == 429, (s, body)      # the right password too, until the window slides on


async def test_ota__a_release_added_with_the_cli_is_served_by_the_running_gateway(gateway, tmp_path):
    gw = await _gw(gateway, tmp_path)
    bundle = make_bundle(tmp_path / "b", "0.5.0")
    r = await asyncio.to_thread(run_cli, "gateway", "release", "add", str(bundle), "--db", gw.settings.db)
    assert r.returncode == 0, r.stderr
    s, rows = await http(gw, "GET", "/api/releases")
    assert [x["version"] for x in rows] == ["0.5.0"], rows
    s, h, body = await _get(gw.port, "/fw/0.5.0/main.py", {"Authorization": basic("CP-1", PW["CP-1"])})
    assert (s, body) == (200, (bundle / "main.py").read_bytes()), (s, body)


@pytest.mark.both_stores   # the OTA tables (migration 0002) on PostgreSQL too
async def test_ota__update_one_station_from_the_api_to_installed(gateway, tmp_path):
    gw = await _gw(gateway, tmp_path)
    # a file near the 256 KiB limit: streamed in many reads on both sides
    bundle = make_bundle(tmp_path / "b", "0.2.0", files={"main.py": b"import app\n",
                                                         "app.mpy": bytes(range(256)) * 1000})
    assert (await _add(gw, bundle))[0] == 201
    board = await OtaBoard(gw.port, "CP-1", PW["CP-1"], version="0.1.0").start()
    try:
        s, st = await http(gw, "GET", "/api/stations/CP-1")
        assert (st["firmware"], st["firmware_status"]) == ("0.1.0", None), st
        s, out = await http(gw, "POST", "/api/stations/CP-1/update", {"version": "0.2.0"})
        assert s == 200, out
        assert out["location"] == "http://127.0.0.1:%d/fw/0.2.0/manifest.json" % gw.port, out
        assert out["answer"] == {} and out["retrieve_date"].endswith("Z"), out
        assert board.received == [("UpdateFirmware", out["location"], out["retrieve_date"])], board.received

        async def installed():
            while True:
                s, st = await http(gw, "GET", "/api/stations/CP-1")
                if st["firmware"] == "0.2.0" and (st["firmware_status"] or {}).get("status") == "Installed":
                    return st
                await asyncio.sleep(0.05)
        st = await asyncio.wait_for(installed(), 30)
        assert st["connected"], st
        assert board.fetched == {p.name: p.read_bytes() for p in bundle.iterdir()}
        assert [x for x in board.statuses] == [("firmware", s) for s in (
            "Downloading", "Downloaded", "Installing", "Installed")], board.statuses
        s, hist = await http(gw, "GET", "/api/stations/CP-1/firmware-history")
        assert [(h["kind"], h["status"]) for h in hist] == [("firmware", s) for s in (
            "Installed", "Installing", "Downloaded", "Downloading")], hist
        # the update's refusals
        s, out = await http(gw, "POST", "/api/stations/CP-1/update", {"version": "9.9.9"})
        assert (s, out) == (400, {"error": "version '9.9.9' is not a release on this gateway (GET /api/releases; "
                                           "add one with POST /api/releases)"}), out
        s, out = await http(gw, "POST", "/api/stations/CP-2/update", {"version": "0.2.0"})
        assert (s, out) == (409, {"error": "station CP-2 is not connected"}), out
        s, out = await http(gw, "POST", "/api/stations/CP-1/update", {"version": "0.2.0", "retrieve_date": "soon"})
        assert (s, out) == (400, {"error": "retrieve_date 'soon' is not ISO 8601 (e.g. 2026-01-31T12:00:00Z)"}), out
    finally:
        await board.stop()


async def test_ota__a_release_altered_on_the_gateway_is_refused_by_the_board(gateway, tmp_path):
    gw = await _gw(gateway, tmp_path)
    assert (await _add(gw, make_bundle(tmp_path / "b", "0.2.0")))[0] == 201
    p = gw.settings.db + ".releases/0.2.0/app.py"
    data = open(p, "rb").read()
    with open(p, "wb") as f:        # altered at rest, same size: only the SHA-256 tells
        f.write(data.replace(b"pass", b"evil"))
    board = await OtaBoard(gw.port, "CP-1", PW["CP-1"]).start()
    try:
        s, out = await http(gw, "POST", "/api/stations/CP-1/update", {"version": "0.2.0"})
        assert s == 200, out
        st = await asyncio.wait_for(_until_status(gw, "CP-1", "InstallationFailed"), 30)
        assert st["firmware"] == "0.1.0", st
    finally:
        await board.stop()


async def _until_status(gw, sid, status, kind="firmware_status"):
    while True:
        s, st = await http(gw, "GET", "/api/stations/" + sid)
        if (st[kind] or {}).get("status") == status:
            return st
        await asyncio.sleep(0.05)


@pytest.mark.both_stores   # the OTA tables (migration 0002) on PostgreSQL too
async def test_ota__diagnostics_requested_uploaded_listed_downloaded(gateway, tmp_path):
    gw = await _gw(gateway, tmp_path)
    board = await OtaBoard(gw.port, "CP-1", PW["CP-1"]).start()
    try:
        s, out = await http(gw, "POST", "/api/stations/CP-1/diagnostics",
                            {"start_time": "2026-11-30T17:00:00Z", "retries": 2})
        assert s == 200, out
        assert out["location"] == "http://127.0.0.1:%d/diag/CP-1/" % gw.port, out
        name = out["answer"]["fileName"]
        assert name.startswith("CP-1-") and name.endswith("Z.log"), out
        assert board.received == [("GetDiagnostics", out["location"],
                                   {"start_time": "2026-11-30T17:00:00Z", "retries": 2})], board.received
        st = await asyncio.wait_for(_until_status(gw, "CP-1", "Uploaded", "diagnostics_status"), 30)
        assert st["diagnostics_status"]["status"] == "Uploaded", st
        s, rows = await http(gw, "GET", "/api/stations/CP-1/diagnostics")
        want = ("\n".join(board.log) + "\n").encode()
        assert [(r["name"], r["size"]) for r in rows] == [(name, len(want))], rows
        s, h, body = await _get(gw.port, "/api/stations/CP-1/diagnostics/" + name,
                                {"Authorization": "Bearer " + gw.settings.api_token})
        assert (s, body) == (200, want), (s, body)
        assert h["Content-Type"] == "text/plain; charset=utf-8" and "attachment" in h["Content-Disposition"], h
        s, h, body = await _get(gw.port, "/api/stations/CP-1/diagnostics/" + name)
        assert s == 401, body
        f = os.path.join(diagnostics.diagnostics_dir(gw.settings.db), "st-CP-1", name)
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    finally:
        await board.stop()


async def test_ota__diagnostics_uploads_only_from_that_station_bounded_and_named(gateway, tmp_path):
    gw = await _gw(gateway, tmp_path)
    up = "/diag/CP-1/CP-1-20261130T180000Z.log"
    s, h, body = await _get(gw.port, up, method="PUT", data=b"x\n")
    assert s == 401, body
    s, h, body = await _get(gw.port, up, {"Authorization": basic("CP-2", PW["CP-2"])}, "PUT", b"x\n")
    assert (s, json.loads(body)) == (403, {"error": "these are station CP-2's credentials: a station uploads only "
                                                    "to /diag/CP-2/"}), body
    s, h, body = await _get(gw.port, up, {"Authorization": basic("CP-1", "wrong-password-1234")}, "PUT", b"x\n")
    assert s == 401, body
    s, h, body = await _get(gw.port, "/diag/CP-1/.hidden", {"Authorization": basic("CP-1", PW["CP-1"])}, "PUT",
                            b"x\n")
    assert s == 400 and b"does not start with a dot" in body, body
    s, h, body = await _get(gw.port, "/diag/CP-1/a%20b.log", {"Authorization": basic("CP-1", PW["CP-1"])}, "PUT",
                            b"x\n")
    assert s == 400, body
    # 1 MiB is the most a file may hold; a longer body is refused and nothing is kept
    mib = 1024 * 1024
    s, h, body = await _get(gw.port, up, {"Authorization": basic("CP-1", PW["CP-1"])}, "PUT", b"y" * mib)
    assert (s, json.loads(body)) == (201, {"name": "CP-1-20261130T180000Z.log", "size": mib}), body
    s, h, body = await _get(gw.port, "/diag/CP-1/big.log", {"Authorization": basic("CP-1", PW["CP-1"])}, "PUT",
                            b"y" * (mib + 1))
    assert s == 413, body
    s, rows = await http(gw, "GET", "/api/stations/CP-1/diagnostics")
    assert [(r["name"], r["size"]) for r in rows] == [("CP-1-20261130T180000Z.log", mib)], rows
    assert sorted(os.listdir(os.path.join(gw.settings.db + ".diagnostics", "st-CP-1"))) == [
        "CP-1-20261130T180000Z.log"]


# --- the parsers, attacked (hypothesis) ------------------------------------------------------
from hypothesis import given, settings, strategies as hs  # noqa: E402

from picocharge.gateway import diagnostics, releases  # noqa: E402


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(hs.binary(max_size=6000))
def test_ota__any_body_is_a_release_or_a_bundle_error(body):
    for data in (body, b"PK\x03\x04" + body, b"\x1f\x8b" + body, body.ljust(1024, b"\0")):
        try:
            files = releases.read_archive(data)
        except releases.BundleError:
            continue
        try:
            releases.check_bundle(files)
        except releases.BundleError:
            pass


json_values = hs.recursive(hs.none() | hs.booleans() | hs.integers() | hs.text(max_size=50),
                           lambda c: hs.lists(c, max_size=5) | hs.dictionaries(hs.text(max_size=10), c, max_size=5),
                           max_leaves=20)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(hs.dictionaries(hs.sampled_from(["format", "version", "board", "mpy", "key_id", "created", "files", "x"]),
                       json_values, max_size=8))
def test_ota__any_manifest_is_checked_or_refused_with_a_bundle_error(m):
    try:
        out = releases.check_manifest(json.dumps(m).encode())
    except releases.BundleError as e:
        assert str(e).startswith("manifest.json"), e
        return
    assert out["format"] == 1 and releases.version_problem(out["version"]) is None, out


def test_ota__manifest_valid_and_invalid_pairs(tmp_path):
    good = json.loads((make_bundle(tmp_path, "1.2.3") / "manifest.json").read_bytes())
    assert releases.check_manifest(json.dumps(good).encode())["version"] == "1.2.3"
    bad = [({"format": 2}, "manifest.json: format 2, this gateway knows format 1"),
           ({"version": "a" * 33}, "manifest.json: version '%s': a version is 1-32 characters" % ("a" * 33)),
           ({"version": ".."}, "manifest.json: version '..': a version is 1-32 characters"),
           ({"key_id": "XYZ"}, "manifest.json: key_id must be 8 lowercase hex digits"),
           ({"mpy": True}, "manifest.json: mpy must be null or the .mpy version"),
           ({"files": []}, "manifest.json: files must list 1..64 files"),
           ({"files": [dict(good["files"][0], name="lib/x.py")]}, "manifest.json: files[0]: name 'lib/x.py' must"),
           ({"files": [good["files"][0]] * 2}, "manifest.json: files[1]: main.py is listed twice"),
           ({"files": [dict(good["files"][0], sha256="AB" * 32)]}, "manifest.json: files[0]: main.py: sha256 must")]
    for change, start in bad:
        with pytest.raises(releases.BundleError) as e:
            releases.check_manifest(json.dumps(dict(good, **change)).encode())
        assert str(e.value).startswith(start), (change, str(e.value))
    with pytest.raises(releases.BundleError, match="manifest.json is 8193 bytes: at most 8192"):
        releases.check_manifest(b" " * 8193)
    # the board takes 8192 (docs/ota.md): a manifest of 64 entries fits
    many = dict(good, files=[dict(good["files"][0], name="mod_%02d.mpy" % i) for i in range(64)])
    raw = json.dumps(many).encode()
    assert 4096 < len(raw) <= 8192, len(raw)
    assert releases.check_manifest(raw)["files"][63]["name"] == "mod_63.mpy"


def test_ota__diagnostics_names_valid_and_invalid():
    for ok in ("CP-1-20261130T180000Z.log", "a", "x" * 80, "A_b.c-d"):
        assert diagnostics.name_problem(ok) is None, ok
    for bad in ("", ".", "..", ".hidden", "a/b", "a b", "x" * 81, "é.log", None):
        assert diagnostics.name_problem(bad), bad
