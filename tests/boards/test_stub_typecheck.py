"""boards/pico_w (and pico2_w, which reuses it) type-checked with mypy against the published
MicroPython v1.28 stubs for the Pico W (PyPI micropython-rp2-rpi-pico-w-stubs, with its
micropython-stdlib-stubs as the standard library): a call the real rp2 port does not have
fails the build. mypy, not pyright: mypy is pure Python and runs offline from the wheel;
pyright's PyPI package downloads its node package from npm at first run.

The stubs themselves do not pass mypy cleanly (redefinitions, overlapping overloads), so
errors inside them are ignored; only our modules' errors count. Function bodies are checked
although unannotated (--check-untyped-defs): otherwise mypy would skip all of board.py."""
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "boards"
STUBS = "micropython-rp2-rpi-pico-w-stubs"
STDLIB = "micropython-stdlib-stubs"

pytest.importorskip("mypy", reason="pip install -e '.[test]' installs mypy")


def _dist(name):
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("%s is not installed: pip install -e '.[test]'" % name)


@pytest.fixture(scope="module")
def stub_env(tmp_path_factory):
    """(stub folder for MYPYPATH, mypy.ini, custom typeshed dir)."""
    base = tmp_path_factory.mktemp("stubs")
    stubs = base / "stubs"
    rp2 = _dist(STUBS)
    assert rp2.version.startswith("1.28."), rp2.version    # the MicroPython release we target
    for f in rp2.files:
        if f.suffix == ".pyi":
            dest = stubs / f
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.locate(), dest)
    std = _dist(STDLIB)
    typeshed = Path(std.locate_file(""))
    assert (typeshed / "stdlib" / "VERSIONS").is_file(), typeshed
    # the rp2 stubs import helper types from the stdlib stubs' _mpy_shed package: without it
    # machine.Pin would derive from Any and accept any attribute
    shutil.copytree(typeshed / "_mpy_shed", stubs / "_mpy_shed",
                    ignore=shutil.ignore_patterns("__pycache__"))
    tops = sorted({p.name[:-4] if p.suffix == ".pyi" else p.name for p in stubs.iterdir()})
    ini = base / "mypy.ini"
    ini.write_text("[mypy]\ncheck_untyped_defs = True\nwarn_unused_ignores = True\n\n[mypy-%s]\n"
                   "ignore_errors = True\n" % ",".join(m for t in tops for m in (t, t + ".*")))
    return stubs, ini, typeshed


def mypy(stub_env, files, cwd):
    stubs, ini, typeshed = stub_env
    env = dict(os.environ, MYPYPATH=str(stubs))
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ini), "--no-incremental",
                        "--cache-dir", os.devnull, "--no-site-packages",
                        "--custom-typeshed-dir", str(typeshed)] + [str(f) for f in files],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def _tree(tmp_path, pico_w_src=None):
    """The modules as a board holds them: /pico_w.py, /board.py (pico2_w), plus the contract
    and a file that assigns each Board to it (so mypy checks the contract's signatures)."""
    (tmp_path / "pico_w.py").write_text(pico_w_src or (BOARDS / "pico_w" / "board.py").read_text())
    shutil.copyfile(BOARDS / "pico2_w" / "board.py", tmp_path / "pico2_w.py")
    shutil.copyfile(BOARDS / "contract.py", tmp_path / "contract.py")
    (tmp_path / "conforms.py").write_text(
        "from contract import BoardContract\nimport pico_w\nimport pico2_w\n\n\n"
        "def check() -> None:\n"
        "    a: BoardContract = pico_w.Board()\n"
        "    b: BoardContract = pico2_w.Board()\n"
        "    c: str = pico_w.NAME + pico2_w.NAME\n")
    return ["pico_w.py", "pico2_w.py", "conforms.py"]


def test_typecheck__pico_w_board_passes_the_rp2_stubs(stub_env, tmp_path):
    code, out = mypy(stub_env, _tree(tmp_path), tmp_path)
    assert code == 0, out
    assert "Success: no issues found in 3 source files" in out, out


@pytest.mark.parametrize("bad, expected", [
    ("machine.Pin.nonexistent()", '"type[Pin]" has no attribute "nonexistent"'),
    ("time.sleep_ns(5)", 'Module has no attribute "sleep_ns"'),
    ("self._wlan.status('rssi', 3)", 'No overload variant of "status" of "WLAN"'),
])
def test_typecheck__a_call_the_port_does_not_have_fails(stub_env, tmp_path, bad, expected):
    src = (BOARDS / "pico_w" / "board.py").read_text()
    anchor = "        self._led.value(1 if on else 0)\n"
    assert anchor in src
    files = _tree(tmp_path, src.replace(anchor, anchor + "        " + bad + "\n", 1))
    code, out = mypy(stub_env, files, tmp_path)
    assert code == 1 and expected in out and "pico_w.py:" in out, out


def test_typecheck__a_board_that_breaks_the_contract_fails(stub_env, tmp_path):
    src = (BOARDS / "pico_w" / "board.py").read_text()
    anchor = "    def wdt_feed(self):"
    assert anchor in src
    files = _tree(tmp_path, src.replace(anchor, "    def wdt_feed(self, extra):", 1))
    code, out = mypy(stub_env, files, tmp_path)
    assert code == 1 and "conforms.py:" in out and "BoardContract" in out, out
