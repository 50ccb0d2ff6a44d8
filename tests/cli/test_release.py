"""picocharge release key / release build (docs/ota.md's bundle) and provision --release-key-file,
through the installed command."""
import hashlib
import hmac
import json
import os
import stat
import subprocess

import pytest

from support.cli import run_cli

from picocharge.firmware import config as fwconfig
from picocharge.unixport import find_micropython


@pytest.fixture
def key_file(tmp_path):
    p = tmp_path / "fleet.key"
    r = run_cli("release", "key", "--out", str(p))
    assert r.returncode == 0, r.stderr
    return p


def test_release__key_is_a_new_0600_file_never_printed_never_overwritten(key_file):
    key = key_file.read_text().strip()
    assert len(key) == 64 and int(key, 16) >= 0
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    r = run_cli("release", "key", "--out", str(key_file))
    assert r.returncode == 1 and "exists: a fleet key is never overwritten" in r.stderr, r.stderr
    assert key_file.read_text().strip() == key and key not in r.stdout + r.stderr


def test_release__build_makes_the_signed_bundle_of_the_contract(key_file, tmp_path):
    key = key_file.read_text().strip()
    r = run_cli("release", "build", "--version", "0.2.0-rc.1", "--key-file", str(key_file), "--out",
                str(tmp_path / "rel"))
    assert r.returncode == 0, r.stderr
    d = tmp_path / "rel" / "0.2.0-rc.1"
    assert key not in r.stdout + r.stderr
    raw = (d / "manifest.json").read_bytes()
    assert len(raw) <= 8192
    assert (d / "manifest.sig").read_text() == hmac.new(bytes.fromhex(key), raw, hashlib.sha256).hexdigest()
    m = json.loads(raw)
    assert (m["format"], m["version"], m["board"], m["mpy"]) == (1, "0.2.0-rc.1", None, 6), m
    assert m["key_id"] == hashlib.sha256(bytes.fromhex(key)).hexdigest()[:8]
    names = [f["name"] for f in m["files"]]
    assert sorted(p.name for p in d.iterdir()) == sorted(names + ["manifest.json", "manifest.sig"])
    assert "app.mpy" in names and "ota.mpy" in names
    for no in ("main.py", "main.mpy", "fwboot.mpy", "board.mpy", "pico_w.mpy"):   # boot loader, board module: not in it
        assert no not in names, names
    for f in m["files"]:
        data = (d / f["name"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["size"], f["sha256"]), f
    # the generated version module is what the board will report
    out = subprocess.run([find_micropython(), "-c", "import version; print(version.VERSION)"],
                         env=dict(os.environ, MICROPYPATH=str(d)), capture_output=True, text=True)
    assert out.stdout.strip() == "0.2.0-rc.1", out
    # never rebuilt in place
    r = run_cli("release", "build", "--version", "0.2.0-rc.1", "--key-file", str(key_file), "--out",
                str(tmp_path / "rel"))
    assert r.returncode == 1 and "is never rebuilt in place" in r.stderr, r.stderr


def test_release__with_board_and_sources(key_file, tmp_path):
    r = run_cli("release", "build", "--version", "0.3.0", "--with-board", "unix", "--no-compile", "--json",
                "--key-file", str(key_file), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    m = json.loads((tmp_path / "0.3.0" / "manifest.json").read_text())
    assert (m["board"], m["mpy"], out["board"], out["files"]) == ("unix", None, "unix", len(m["files"])), (m, out)
    names = [f["name"] for f in m["files"]]
    assert "board.py" in names and all(n.endswith(".py") for n in names) and "main.py" not in names
    assert (tmp_path / "0.3.0" / "version.py").read_text().endswith("VERSION = '0.3.0'\n")


@pytest.mark.parametrize("args, words", [
    (["--version", "0.2 beta"], "version '0.2 beta': 1-32 characters of A-Z a-z 0-9 . _ + - expected"),
    (["--with-board", "nope"], "no board 'nope'"),
])
def test_release__bad_arguments_are_refused_with_why(key_file, tmp_path, args, words):
    r = run_cli("release", "build", "--key-file", str(key_file), "--out", str(tmp_path), *args)
    assert r.returncode in (1, 2) and words in r.stderr, r.stderr
    assert not list(tmp_path.glob("0*")), list(tmp_path.iterdir())


def test_release__bad_key_file_is_refused(tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("not-a-key\n")
    r = run_cli("release", "build", "--key-file", str(bad), "--out", str(tmp_path / "rel"))
    assert r.returncode == 1 and "is not a release key file: it must hold 64 hex digits" in r.stderr, r.stderr
    r = run_cli("release", "build", "--key-file", str(tmp_path / "missing.key"), "--out", str(tmp_path / "rel"))
    assert r.returncode == 1 and "cannot read the release key file" in r.stderr, r.stderr


def test_config__ota_key_valid_and_invalid():
    good = {"station_id": "CP-1", "ota": {"key": "ab" * 32, "trial_s": 60}}
    assert fwconfig.validate(good)["ota"] == {"key": "ab" * 32, "trial_s": 60, "trial_boots": 3, "diag_kb": 32}
    for bad in ("ab" * 31, "zz" * 32, "ab" * 33):
        with pytest.raises(fwconfig.ConfigError) as e:
            fwconfig.validate({"station_id": "CP-1", "ota": {"key": bad}})
        assert e.value.key == "ota.key" and "64 hex digits expected" in str(e.value), e.value
    assert fwconfig.redact(fwconfig.validate(good))["ota"]["key"] == "***"


def test_provision__release_key_file_sets_ota_key_and_a_bad_one_writes_nothing(vboards, key_file, tmp_path):
    b = vboards("bench", run_main=False)
    key = key_file.read_text().strip()
    r = run_cli("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-1", "--ssid", "shed",
                "--release-key-file", str(key_file))
    assert r.returncode == 0, r.stderr
    assert json.loads((b.flash / "config.json").read_text())["ota"] == {"key": key}
    assert key not in r.stdout + r.stderr and "ota.key=***" in r.stdout, r.stdout
    before = (b.flash / "config.json").read_bytes()
    bad = tmp_path / "bad.key"
    bad.write_text("12" * 31)
    r = run_cli("provision", "-p", b.device, "--no-prompt", "--release-key-file", str(bad))
    assert r.returncode == 1 and "is not a release key file" in r.stderr, r.stderr
    r = run_cli("provision", "-p", b.device, "--no-prompt", "--set", "ota.key=" + "zz" * 32)
    assert r.returncode == 1 and "config key 'ota.key': is not a release key" in r.stderr, r.stderr
    assert (b.flash / "config.json").read_bytes() == before
