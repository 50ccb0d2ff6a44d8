"""The demo's files are its owner's only (issue 10): the gateway database (ThingSpeak keys,
password hashes) and each station's config.json (its OCPP password) were created 0644."""
import stat
import subprocess
import sys


def test_demo__its_database_and_station_configs_are_owner_only(tmp_path):
    data = tmp_path / "demo"
    p = subprocess.run([sys.executable, "-m", "picocharge.cli", "demo", "-n", "2", "--port", "0", "--duration", "3",
                        "--data", str(data)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)   # noqa: E731
    configs = sorted(data.glob("stations/*/config.json"))
    assert len(configs) == 2, sorted(data.rglob("*"))
    got = {str(f.relative_to(data)): oct(mode(f)) for f in [data / "gateway.db"] + configs}
    assert set(got.values()) == {"0o600"}, got
    assert mode(data) == 0o700, oct(mode(data))
