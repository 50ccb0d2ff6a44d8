"""picocharge flash: UF2 checks (valid/invalid pairs), a folder standing for the RPI-RP2 drive,
a virtual board that 'comes back' after the copy, the no-internet message."""
import json
import struct
import sys
import threading
import time

import pytest

from support.net import free_port
from picocharge import uf2

INFO = "UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n"


def block(i, n, addr, data=b"", flags=0x2000, family=0xE48BFF56, size=256,
          m0=0x0A324655, m1=0x9E5D5157, mend=0x0AB16F30):
    """One 512-byte UF2 block, laid out from the UF2 specification (not from picocharge.uf2)."""
    head = struct.pack("<IIIIIIII", m0, m1, flags, addr, size, i, n, family)
    return head + data.ljust(476, b"\0") + struct.pack("<I", mend)


def image(n=4, bad=None):
    """n blocks for flash at 0x10000000; bad={index: {field: value}} breaks some."""
    out = b""
    for i in range(n):
        kw = dict(i=i, n=n, addr=0x10000000 + 256 * i, data=bytes([i]) * 256)
        kw.update((bad or {}).get(i, {}))
        out += block(**kw)
    return out


def test_uf2__valid_image():
    assert uf2.check(image(4)) == {"blocks": 4, "bytes": 1024, "start": 0x10000000, "end": 0x10000400,
                                   "family": 0xE48BFF56}


@pytest.mark.parametrize("data, msg", [
    (image(4, {2: {"m0": 0x12345678}}), "block 2 (byte offset 1024): first magic number is 0x12345678, expected 0x0A324655"),
    (image(4, {1: {"m1": 0}}), "block 1 (byte offset 512): second magic number is 0x00000000, expected 0x9E5D5157"),
    (image(4, {3: {"mend": 0xDEADBEEF}}), "block 3 (byte offset 1536): final magic number is 0xDEADBEEF, expected 0x0AB16F30"),
    (image(4, {0: {"family": 0xADA52840}}), "block 0 (byte offset 0): family id is 0xADA52840, expected 0xE48BFF56 (RP2040)"),
    (image(4, {1: {"flags": 0}}), "block 1 (byte offset 512): has no family id (flag 0x2000 unset)"),
    (image(4, {2: {"i": 3}}), "block 2 (byte offset 1024): is numbered 3, expected 2"),
    (image(4, {1: {"n": 5}}), "block 1 (byte offset 512): says the image has 5 blocks, block 0 says 4"),
    (image(4, {0: {"n": 5}}), "block 0 (byte offset 0): says the image has 5 blocks, but the file holds 4"),
    (image(4, {3: {"addr": 0x20000000}}), "block 3 (byte offset 1536): target address 0x20000000 is outside the RP2040's flash"),
    (image(4, {2: {"size": 476}}), "block 2 (byte offset 1024): payload size is 476, expected 256"),
    (image(4)[:-100], "not a whole number of 512-byte UF2 blocks"),
    (b"", "the file is empty"),
])
def test_uf2__invalid_images_name_the_block(data, msg):
    with pytest.raises(uf2.UF2Error) as e:
        uf2.check(data)
    assert msg in str(e.value), str(e.value)


def make_drive(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "INFO_UF2.TXT").write_text(INFO)
    (path / "INDEX.HTM").write_text("<html></html>")
    return path


def comes_back_after_copy(drive, vboards, name="fresh"):
    """Stand for the board: when a complete .uf2 lands on the drive, a board appears on 'USB'."""
    def watch():
        end = time.monotonic() + 20
        while time.monotonic() < end:
            for f in drive.glob("*.uf2"):
                if f.stat().st_size and f.stat().st_size % 512 == 0:
                    time.sleep(0.3)
                    vboards(name, run_main=False)
                    return
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_flash__copies_a_valid_image_and_reports_the_version(tmp_path, vboards, pc):
    drive = make_drive(tmp_path / "RPI-RP2")
    fw = tmp_path / "RPI_PICO_W-test.uf2"
    fw.write_bytes(image(8))
    t = comes_back_after_copy(drive, vboards)
    r = pc("flash", "--uf2", str(fw), "--drive", str(drive), "--wait", "20", "--json")
    t.join()
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (drive / fw.name).read_bytes() == fw.read_bytes()
    assert out["micropython"] == "1.29.0" and out["port"].startswith("/dev/pts/"), out
    assert {k: out[k] for k in ("blocks", "bytes", "start", "end", "drive")} == {
        "blocks": 8, "bytes": 2048, "start": "0x10000000", "end": "0x10000800", "drive": str(drive)}, out


def test_flash__broken_image_is_refused_and_nothing_copied(tmp_path, pc):
    drive = make_drive(tmp_path / "RPI-RP2")
    fw = tmp_path / "broken.uf2"
    fw.write_bytes(image(4, {2: {"family": 0x68ED2B88}}))  # another chip's family id
    r = pc("flash", "--uf2", str(fw), "--drive", str(drive))
    assert r.exit_code == 1, r.output
    assert "block 2 (byte offset 1024): family id is 0x68ED2B88" in r.output, r.output
    assert sorted(p.name for p in drive.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]


def test_flash__check_only(tmp_path, pc):
    fw = tmp_path / "ok.uf2"
    fw.write_bytes(image(2))
    r = pc("flash", "--uf2", str(fw), "--check-only")
    assert r.exit_code == 0, r.output
    assert r.stdout == "%s: valid RP2040 UF2 image, 2 blocks, flash 0x10000000..0x10000200\n" % fw, r.stdout


def test_flash__no_internet_says_to_use_uf2(tmp_path, pc, monkeypatch):
    monkeypatch.setenv("PICOCHARGE_CACHE", str(tmp_path / "cache"))
    url = "http://127.0.0.1:%d/RPI_PICO_W-x.uf2" % free_port()  # nothing listens there
    r = pc("flash", "--download-url", url, "--drive", str(make_drive(tmp_path / "RPI-RP2")))
    assert r.exit_code == 1, r.output
    assert "cannot download MicroPython for the Pico W from %s" % url in r.output, r.output
    assert "pass it with --uf2 FILE" in r.output and "micropython.org/download/RPI_PICO_W" in r.output


class _Server:
    """An HTTP server on 127.0.0.1 answering every GET with `self.body`; counts the requests."""

    def __init__(self, body):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        srv = self
        self.body, self.hits = body, 0

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                srv.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(srv.body)))
                self.end_headers()
                self.wfile.write(srv.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/RPI_PICO_W-t.uf2" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_flash__a_bad_download_is_not_cached(tmp_path, pc, monkeypatch):
    monkeypatch.setenv("PICOCHARGE_CACHE", str(tmp_path / "cache"))
    srv = _Server(image(4)[:1500])   # truncated mid-block
    try:
        r = pc("flash", "--download-url", srv.url, "--check-only")
        assert r.exit_code == 1, r.output
        assert "the download from %s is not a valid RP2040 UF2 image" % srv.url in r.output, r.output
        assert "not a whole number of 512-byte UF2 blocks" in r.output, r.output
        assert list((tmp_path / "cache" / "uf2").iterdir()) == [], "a bad download was kept"
        srv.body = image(4)   # the next run downloads again, and caches the good image
        r = pc("flash", "--download-url", srv.url, "--check-only")
        assert r.exit_code == 0, r.output
        cached = tmp_path / "cache" / "uf2" / "RPI_PICO_W-t.uf2"
        assert cached.read_bytes() == image(4) and srv.hits == 2, srv.hits
        r = pc("flash", "--download-url", srv.url, "--check-only")
        assert r.exit_code == 0 and srv.hits == 2, (r.output, srv.hits)   # from the cache
        cached.write_bytes(b"<html>captive portal</html>")   # a bad file cached earlier is fetched again
        r = pc("flash", "--download-url", srv.url, "--check-only")
        assert r.exit_code == 0 and srv.hits == 3 and cached.read_bytes() == image(4), r.output
    finally:
        srv.stop()


def test_flash__no_drive_and_no_board(tmp_path, pc):
    fw = tmp_path / "ok.uf2"
    fw.write_bytes(image(2))
    r = pc("flash", "--uf2", str(fw), "--drive", str(tmp_path / "nothing"))
    assert r.exit_code == 1, r.output
    assert "no RPI-RP2 drive found" in r.output and "hold the BOOTSEL button" in r.output, r.output


def test_flash__asks_a_running_board_for_its_bootloader(tmp_path, vboards, pc, trace):
    old = vboards("old", run_main=False)
    drive = tmp_path / "RPI-RP2"
    fw = tmp_path / "ok.uf2"
    fw.write_bytes(image(2))

    def bootsel():  # the board reboots into its bootloader: the drive mounts
        time.sleep(1.0)
        make_drive(drive)

    threading.Thread(target=bootsel, daemon=True).start()
    t = comes_back_after_copy(drive, vboards)
    r = pc("flash", "--uf2", str(fw), "--drive", str(drive), "-p", old.device, "--wait", "20")
    t.join()
    assert r.exit_code == 0, r.output
    assert [sys.executable, "-m", "mpremote", "connect", old.device, "bootloader"] in trace, trace
    assert "asked the board on %s to enter its bootloader" % old.device in r.output
    assert r.stdout.splitlines()[-1].startswith("MicroPython 1.29.0 is running on /dev/pts/"), r.stdout
