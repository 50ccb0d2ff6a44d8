"""The board's status page under bad input (issue 17): floods of half-sent requests, a
slowloris and a huge request line must cost the page only itself, never the sample task
and its over-temperature check; the page answers again once they stop."""
import socket
import threading
import time

from support.net import free_port
from support.firmware import base_config, get_json


def _half_open(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(b"GET /api/status HTTP/1.1\r\nHost: station\r\nX-Pad: ")
        except OSError:
            pass
        socks.append(s)
    return socks


def _slowloris(port, stop):
    """Re-opens and trickles a header byte every 0.3 s until `stop`."""
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\n")
            while not stop.is_set():
                s.sendall(b"X")
                time.sleep(0.3)
        except OSError:
            time.sleep(0.1)


def _huge_line(port, stop, sizes):
    """Request lines of 4 MiB with no end, again and again."""
    chunk = b"A" * 65536
    while not stop.is_set():
        sent = 0
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /")
            while sent < 4 << 20 and not stop.is_set():
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        sizes.append(sent)
        time.sleep(0.1)


def test_web__flood_slowloris_and_huge_line_leave_safety_and_sampling_running(station):
    port = free_port()
    st = station(base_config(web={"enabled": True, "port": port}, sensors={"interval_s": 1}),
                 scenario={"timeline": [[12, "dht.temp_c", 70.0]]}).start()
    st.expect("[board] I: relay closed", timeout=10)
    st.expect("[web] I: status page on port %d" % port)
    stop = threading.Event()
    sizes = []
    threads = [threading.Thread(target=_slowloris, args=(port, stop), daemon=True) for _ in range(3)]
    threads.append(threading.Thread(target=_huge_line, args=(port, stop, sizes), daemon=True))
    socks = []
    try:
        for t in threads:
            t.start()
        for _ in range(3):  # 3 waves of 15 half-sent requests, each wave held open
            socks += _half_open(port, 15)
            time.sleep(0.5)
        # over-temperature while the page is flooded: the relay still opens
        st.expect("degC above 50: relay opened", timeout=25)
        st.expect("[board] I: relay open", timeout=5)
        n = st.output().count("[meter] I:")
        end = time.monotonic() + 10
        while st.output().count("[meter] I:") < n + 3 and time.monotonic() < end:
            time.sleep(0.2)  # sampling goes on under the flood
        assert st.output().count("[meter] I:") >= n + 3, st.output()[-3000:]
    finally:
        stop.set()
        for s in socks:
            s.close()
        for t in threads:
            t.join(10)
    assert sizes, "the huge request line was never sent"
    # the page answers again, with the fault
    end = time.monotonic() + 15
    s = None
    while time.monotonic() < end:
        try:
            s = get_json("http://127.0.0.1:%d/api/status" % port)
            break
        except OSError:
            time.sleep(0.3)
    assert s is not None, st.output()[-3000:]
    assert (s["fault"], s["relay"], s["status"]) == ("HighTemperature", False, "Faulted"), s
    out = st.output()
    assert "MemoryError" not in out and "memory allocation failed" not in out and "crashed" not in out \
        and "sample:" not in out and "Traceback" not in out, out[-3000:]
    # the port is released on stop: the board started again (its supervisor) serves on it at
    # once, though the flood left the port's closed connections behind
    st.stop()
    assert not _listening(st.proc.pid), "stopped, yet listening"
    st2 = station(base_config(web={"enabled": True, "port": port}), name="again").start()
    st2.expect("[web] I: status page on port %d" % port)
    assert get_json("http://127.0.0.1:%d/api/status" % port)["station_id"] == "CP-7"
    assert "in use" not in st2.output(), st2.output()


def _listening(pid):
    """The TCP ports process `pid` listens on (its socket inodes in /proc/net/tcp*, LISTEN)."""
    import os

    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    except FileNotFoundError:  # the process is gone
        return []
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                c = row.split()
                if c[3] == "0A" and c[9] in inodes:
                    ports.append(int(c[1].rsplit(":", 1)[1], 16))
    return ports


def test_web__port_0_means_no_server(station):
    st = station(base_config(web={"enabled": True, "port": 0})).start()
    st.expect("[app] I: no status page (web.port 0)")
    st.expect("[meter] I:")
    st.expect("[meter] I:")
    assert "[web]" not in st.output(), st.output()
    assert _listening(st.proc.pid) == [], _listening(st.proc.pid)


def test_web__listening_check_sees_the_page_port(station):
    """_listening's counterpart: a station with a page listens on exactly that port."""
    port = free_port()
    st = station(base_config(web={"enabled": True, "port": port})).start()
    st.expect("[web] I: status page on port %d" % port)
    assert _listening(st.proc.pid) == [port], _listening(st.proc.pid)
