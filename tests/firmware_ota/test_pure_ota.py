"""The update's pure parts under CPython and the unix-port micropython (support/ota_checks.py),
and property-based checks of the HMAC and the manifest parser."""
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from support import ota_checks
from support.dual import check_names, run_checks

import ota


@pytest.mark.parametrize("name", check_names(ota_checks))
def test_pure_ota__cpython(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dict(ota_checks.CHECKS)[name]()


def test_pure_ota__micropython_runs_every_check(micropython, tmp_path):
    done, out = run_checks(ota_checks, tmp_path, heap="192K", timeout=120)
    assert done == [n for n, _ in ota_checks.CHECKS], out


@settings(max_examples=200, deadline=None)
@given(hs.binary(max_size=200), hs.binary(max_size=300))
def test_pure_ota__hmac_is_the_standard_librarys(key, msg):
    assert ota.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


_json = hs.recursive(hs.none() | hs.booleans() | hs.integers() | hs.text(max_size=50),
                     lambda c: hs.lists(c, max_size=5) | hs.dictionaries(hs.text(max_size=10), c, max_size=5),
                     max_leaves=30)
_entry = hs.fixed_dictionaries({"name": hs.text(max_size=45) | _json, "size": hs.integers() | _json,
                                "sha256": hs.text("0123456789abcdef", min_size=63, max_size=65) | _json})


@settings(max_examples=300, deadline=None)
@given(hs.fixed_dictionaries({"format": hs.just(1) | _json, "version": hs.text(max_size=40) | _json,
                              "board": hs.none() | hs.just("unix") | _json, "mpy": hs.just(6) | _json,
                              "files": hs.lists(_entry, max_size=6) | _json}) | _json)
def test_pure_ota__manifest_parser_accepts_or_refuses_never_crashes(m):
    try:
        v, files, total = ota.check_manifest(m, "unix", 6)
    except ota.Refused:
        return
    assert 1 <= len(v) <= 32 and files and total == sum(f[1] for f in files) <= 512 * 1024
