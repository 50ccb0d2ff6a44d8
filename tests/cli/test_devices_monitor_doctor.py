"""picocharge devices, monitor (across resets and reconnects) and doctor, on virtual boards."""
import json
import subprocess
import sys

import pytest

from support.cli import FakeGatewayAPI, cli_argv, run_cli
from support.net import free_port, wait_port
from picocharge.procs import stop_process

# a board that resets itself twice (exit 75 = boards/unix RESET_EXIT) and then runs
RESETTING_MAIN = """
import sys, time
try:
    n = int(open('boots').read())
except OSError:
    n = 0
n += 1
open('boots', 'w').write(str(n))
print('boot', n)
time.sleep(0.6)
if n < 3:
    sys.exit(75)
i = 0
while True:
    print('tick', i)
    i += 1
    time.sleep(0.1)
"""


def mp_version(micropython):
    r = subprocess.run([micropython, "-c", "import sys; print('.'.join(str(v) for v in sys.implementation.version[:3]))"],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()


def test_devices__lists_virtual_boards_with_version_and_station(vboards, pc, micropython):
    from picocharge.firmware.version import VERSION
    from picocharge.paths import firmware_dir

    a = vboards("a-bench", files={"config.json": '{"station_id": "CP-50"}',
                                  "version.py": (firmware_dir() / "version.py").read_text()}, run_main=False)
    b = vboards("b-bench", run_main=False)
    r = pc("devices", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    v = mp_version(micropython)
    assert [(x["port"], x["kind"], x["name"], x["micropython"], x["firmware"], x["station_id"], x["error"])
            for x in rows] == [(a.device, "virtual", "a-bench", v, VERSION, "CP-50", ""),
                               (b.device, "virtual", "b-bench", v, "", "", "")], rows
    r = pc("devices")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["PORT", "KIND", "NAME/ID", "MICROPYTHON", "FIRMWARE", "STATION"], r.stdout
    assert lines[1].split() == [a.device, "virtual", "a-bench", v, VERSION, "CP-50"], r.stdout
    assert lines[2].split() == [b.device, "virtual", "b-bench", v, "-", "-"], r.stdout


def test_devices__none(pc):
    r = pc("devices")
    assert r.exit_code == 0 and r.stdout.startswith("no boards found"), r.output
    r = pc("devices", "--json")
    assert json.loads(r.stdout) == []


def test_monitor__shows_the_log_across_resets(vboards, pc):
    b = vboards("bench", files={"main.py": RESETTING_MAIN}, run_main=False)
    r = pc("monitor", "-p", "bench", "--reset", "--duration", "3.5")
    assert r.exit_code == 0, r.output
    lines = [l for l in r.stdout.splitlines() if l.startswith(("boot", "tick", "MPY"))]
    assert lines[:5] == ["MPY: soft reboot", "boot 1", "boot 2", "boot 3", "tick 0"], r.stdout
    assert b.exit_codes.count(75) == 2, b.exit_codes


def test_monitor__reconnects_when_the_port_comes_back(vboards, tmp_path):
    b = vboards("bench", files={"main.py": "import time\nwhile True:\n    print('first board')\n    time.sleep(0.1)\n"})
    p = subprocess.Popen(cli_argv() + ["monitor", "-p", "bench", "--duration", "6", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []   # the monitor passes the first board's output on (a fresh-clone CI run once saw an
    for line in p.stdout:           # empty line first, then the board unplugged before it printed)
        seen.append(line)
        if "first board" in line or len(seen) > 50:
            break
    b.stop()  # unplugged: the port goes away
    said = []
    for line in p.stderr:          # until the monitor has noticed
        said.append(line)
        if "waiting for it to come back" in line:
            break
    vboards("bench", files={"main.py": "import time\nwhile True:\n    print('second board')\n    time.sleep(0.1)\n"})
    out, err = p.communicate(timeout=30)
    out, err = "".join(seen) + out, "".join(said) + err
    assert p.returncode == 0, err
    lines = [json.loads(l)["line"] for l in out.splitlines()]
    assert "first board" in lines and "second board" in lines, lines
    assert lines.index("first board") < lines.index("second board"), lines
    assert "waiting for it to come back" in err and "[monitor] reconnected to /dev/pts/" in err, err


def test_monitor__no_board(pc, tmp_path):
    r = pc("monitor", "-p", str(tmp_path / "ttyACM7"), "--duration", "1")
    assert r.exit_code == 1 and "cannot open" in r.output, r.output


@pytest.fixture
def real_gateway(tmp_path):
    """`picocharge gateway` as a subprocess on a free port: its URL."""
    port = free_port()
    p = subprocess.Popen(cli_argv() + ["gateway", "--host", "127.0.0.1", "--port", str(port),
                                       "--db", str(tmp_path / "gw.db")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not any("gateway listening on" in ln for ln in lines) and len(lines) < 50:
            line = p.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        yield "http://127.0.0.1:%d" % port
    finally:
        stop_process(p)


def test_doctor__all_good_with_a_board_and_a_gateway(vboards, pc, micropython, real_gateway):
    vboards("bench", files={"config.json": '{"station_id": "CP-60"}'}, run_main=False)
    r = pc("doctor", "--gateway", real_gateway, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    checks = {c["name"]: c for c in out["checks"]}
    assert out["ok"] is True, out
    assert checks["mpremote"]["status"] == "ok" and checks["mpy-cross"]["status"] == "ok", checks
    board = [c for n, c in checks.items() if n.startswith("board /dev/pts/")]
    assert len(board) == 1 and board[0]["status"] == "ok", checks
    assert board[0]["detail"] == "virtual, MicroPython %s, PicoCharge (not deployed), station CP-60" % (
        mp_version(micropython)), board
    assert checks["gateway"]["status"] == "ok", checks
    assert checks["gateway"]["detail"].startswith(
        "PicoCharge gateway at %s: 0 station(s) connected of 0 known" % real_gateway), checks


@pytest.mark.parametrize("argv", [["-m", "http.server", "--bind", "127.0.0.1"], None])
def test_doctor__an_unrelated_web_server_is_not_a_gateway(pc, tmp_path, argv):
    """`python -m http.server` (a 404 for /healthz) and a server answering 200 with other JSON."""
    port = free_port()
    if argv:
        p = subprocess.Popen([sys.executable] + argv + [str(port)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = "http://127.0.0.1:%d" % port
        wait_port(port)
    else:
        p = None
        fake = FakeGatewayAPI().start()   # answers {"ok": true} to any other GET: not a gateway's /healthz
        url = fake.url
    try:
        r = pc("doctor", "--no-probe", "--gateway", url)
    finally:
        stop_process(p) if p else fake.stop()
    assert r.exit_code == 1, r.output
    assert "FAIL gateway" in r.stdout and "is a web server but not a PicoCharge gateway" in r.stdout, r.stdout
    assert ("GET /healthz answered HTTP %d" % (404 if argv else 200)) in r.stdout, r.stdout


def test_doctor__says_which_micropython_is_used(pc, micropython, monkeypatch, tmp_path):
    import shutil

    monkeypatch.delenv("PICOCHARGE_MICROPYTHON", raising=False)
    monkeypatch.delenv("MICROPYTHON", raising=False)
    r = pc("doctor", "--no-probe", "--json")
    mp = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["micropython"]
    first = shutil.which("micropython")
    assert mp["detail"].startswith("%s %s (the first micropython on PATH; " % (first, mp_version(micropython))), mp
    # a copy elsewhere, named by the variable, wins over PATH
    other = tmp_path / "bin" / "micropython"
    other.parent.mkdir()
    shutil.copy(micropython, other)
    monkeypatch.setenv("PICOCHARGE_MICROPYTHON", str(other))
    monkeypatch.setenv("MICROPYTHON", first)
    r = pc("doctor", "--no-probe", "--json")
    mp = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["micropython"]
    assert mp["detail"].startswith("%s %s ($PICOCHARGE_MICROPYTHON; " % (other, mp_version(micropython))), mp


def test_doctor__missing_things_and_how_to_fix_them(pc):
    url = "http://127.0.0.1:%d" % free_port()
    r = pc("doctor", "--gateway", url)
    assert r.exit_code == 1, r.output
    assert "WARN board" in r.stdout and "plug the Pico W in" in r.stdout, r.stdout
    assert "picocharge vboard --flash DIR" in r.stdout, r.stdout
    assert "FAIL gateway" in r.stdout and "start it with `picocharge gateway`" in r.stdout, r.stdout
    assert "1 problem(s): gateway" in r.output


@pytest.mark.parametrize("cmd, words", [
    ("flash", ["BOOTSEL", "--uf2", "--drive", "PICOCHARGE_UF2_URL"]),
    ("deploy", ["mpy-cross", "--dry-run", "PICOCHARGE_PORT", "SHA-256"]),
    ("provision", ["--inventory", "--only", "--register-gateway", "--set", "PICOCHARGE_WIFI_PASSWORD"]),
    ("devices", ["0x2E8A", "--json"]),
    ("monitor", ["--reset", "--duration", "reset"]),
    ("doctor", ["--gateway", "FAIL"]),
    ("thingspeak", ["create-channel"]),
])
def test_cli__help_explains_and_bad_options_exit_2(pc, cmd, words):
    r = pc(cmd, "--help")
    assert r.exit_code == 0, r.output
    for w in words:
        assert w in r.output, (w, r.output)
    r = pc(cmd, "--no-such-option")
    assert r.exit_code == 2 and "No such option" in r.output, r.output


def test_cli__subprocess_exit_codes():
    r = run_cli("deploy", "--board", "nosuch")
    assert r.returncode == 2 and "no board 'nosuch'" in r.stderr, r.stderr


def test_vboard__runs_until_stopped_and_is_listed_by_devices(state_dir, tmp_path, micropython):
    """`picocharge vboard` prints its device path, `picocharge devices` (another process) lists
    it and mpremote-style commands reach it; SIGTERM stops it and withdraws the announcement."""
    import os
    import signal

    env = dict(os.environ, PICOCHARGE_STATE_DIR=str(state_dir))
    flash = tmp_path / "flash"
    p = subprocess.Popen(cli_argv() + ["vboard", "--flash", str(flash), "--name", "bench", "--no-main"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        dev = p.stdout.readline().strip()
        assert dev.startswith("/dev/"), (dev, p.stderr.read() if p.poll() is not None else "")
        r = run_cli("devices", "--json", env=env)
        rows = json.loads(r.stdout)
        assert [(b["name"], b["port"], b["kind"]) for b in rows] == [("bench", dev, "virtual")], rows
        assert rows[0]["micropython"] == mp_version(micropython), rows
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0, p.stderr.read()
    assert not list(state_dir.glob("*.json")), list(state_dir.iterdir())
    r = run_cli("devices", "--json", env=env)
    assert json.loads(r.stdout) == [], r.stdout


def test_port_problem__says_why_a_port_cannot_be_opened(tmp_path):
    import fcntl
    import os

    from picocharge.device import port_problem

    assert port_problem(str(tmp_path / "ttyACM9")) == "no such port"
    master, slave = os.openpty()
    try:
        dev = os.ttyname(slave)
        assert port_problem(dev) == ""
        holder = os.open(dev, os.O_RDWR | os.O_NOCTTY)
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)   # what mpremote and pyserial do
        try:
            assert port_problem(dev) == "in use by another program (it holds the port's lock)"
        finally:
            os.close(holder)
        assert port_problem(dev) == ""
    finally:
        os.close(master)
        os.close(slave)
