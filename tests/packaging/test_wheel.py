"""`pip install .` builds a wheel that carries everything a board needs, with no build warning."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel__builds_without_warnings_and_ships_firmware_boards_and_pages(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = "\n".join(ln for ln in (r.stdout + r.stderr).splitlines()
                    if "Running pip as the 'root' user" not in ln and "is ignored: it is neither" not in ln)
    assert "Warning" not in out and "deprecated" not in out, out
    (wheel,) = tmp_path.glob("picocharge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"picocharge/firmware/%s" % p.name for p in (ROOT / "firmware").glob("*.py")}
    expected |= {"picocharge/boards/%s" % p.relative_to(ROOT / "boards").as_posix()
                 for p in (ROOT / "boards").rglob("*") if p.suffix in (".py", ".json")}
    expected |= {"picocharge/gateway/static/%s" % p.name for p in (ROOT / "gateway" / "static").iterdir()
                 if p.is_file()}
    # the store's migrations: without them a gateway cannot create its schema
    expected |= {"picocharge/gateway/migrations/%s" % p.relative_to(ROOT / "gateway" / "migrations").as_posix()
                 for p in (ROOT / "gateway" / "migrations").rglob("*.sql")}
    missing = sorted(expected - names)
    assert not missing, missing
