"""The firmware image cache under concurrency: test workers and simulated stations build the
same image at once, and none may delete a finished copy another one is running from."""
import os
import subprocess
import sys
import textwrap


def test_publish_dir__a_finished_copy_wins_and_is_never_replaced(tmp_path):
    from picocharge.paths import publish_dir

    def done(d):
        return (d / "ok").is_file()

    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    (out / "ok").write_text("first")
    ino = (out / "ok").stat().st_ino
    tmp.mkdir()
    (tmp / "ok").write_text("second")
    assert publish_dir(tmp, out, done) == out
    assert (out / "ok").read_text() == "first" and (out / "ok").stat().st_ino == ino
    assert not tmp.exists()
    # an unfinished one is replaced, and nothing is left aside
    (out / "ok").unlink()
    tmp.mkdir()
    (tmp / "ok").write_text("third")
    publish_dir(tmp, out, done)
    assert (out / "ok").read_text() == "third" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_build_image__six_processes_at_once_all_get_a_complete_image_that_stays(tmp_path):
    """Each process builds the unix image into an empty cache at the same moment, then checks
    that every file of the image it was given is still there after all have finished."""
    code = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from picocharge import unixport
        try:
            img = unixport.build_image("unix")
            files = sorted(p for p in img.rglob("*") if p.is_file())
        finally:
            Path(sys.argv[1]).touch()
        while len(list(Path(sys.argv[2]).glob("done-*"))) < 6:
            time.sleep(0.05)
        missing = [str(p) for p in files if not p.is_file()]
        print(img, len(files), missing)
        sys.exit(1 if missing or len(files) < 5 else 0)
    """)
    env = dict(os.environ, PICOCHARGE_CACHE=str(tmp_path / "cache"))
    lib = subprocess.run([sys.executable, "-c", "from picocharge import mplibs; print(mplibs.lib_dir())"],
                         capture_output=True, text=True)   # the shared PyPI download, fetched once
    assert lib.returncode == 0, lib.stderr
    (tmp_path / "cache").mkdir()
    os.symlink(lib.stdout.strip(), tmp_path / "cache" / "mplib")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / ("done-%d" % i)), str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(6)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len({o.split()[0] for o in outs}) == 1, outs
    images = [p.name for p in (tmp_path / "cache" / "image").iterdir()]
    assert len(images) == 1 and not images[0].count(".tmp") and ".old" not in images[0], images
