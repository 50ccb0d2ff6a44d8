"""The real firmware/main.py on the unix board, against real servers: mosquitto, a local
server that follows ThingSpeak's write API, and HTTP clients of the status page."""
import json
import socket
import threading
import time
import urllib.request

import pytest

from support.broker import Sub
from support.fake_thingspeak import FakeThingSpeak
from support.firmware import base_config, get_json
from support.net import free_port


def test_station__mqtt_telemetry_status_will_and_broker_drop(station, mqtt_broker):
    sub = Sub(mqtt_broker.port)
    st = station(base_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": mqtt_broker.port,
                                   "interval_s": 1, "keepalive_s": 10})).start()
    try:
        tel = sub.wait(lambda m: m[0] == "picocharge/CP-7/telemetry" and '"current_a": 1' in m[1],
                       what="telemetry while charging")
        d = json.loads(tel[1])
        assert set(d) >= {"temp_c", "humidity", "current_a", "voltage_v", "power_w", "energy_wh",
                          "chip_temp_c", "status"}, d
        assert abs(d["voltage_v"] - 230) < 3 and abs(d["current_a"] - 16) < 0.5 and d["status"] == "Charging", d
        status = sub.wait(lambda m: m[0] == "picocharge/CP-7/status" and '"Charging"' in m[1], what="status")
        assert json.loads(status[1]) == {"state": "online", "status": "Charging", "relay": True}, status

        # broker outage: the station notices, backs off, reconnects on the same port
        mqtt_broker.stop()
        st.expect("[mqtt] W: link down", timeout=20)
        n_before = len(sub.msgs)
        mqtt_broker.start()
        sub.close()
        sub = Sub(mqtt_broker.port)
        st.expect("[mqtt] I: connected", timeout=40)
        sub.wait(lambda m: m[0] == "picocharge/CP-7/telemetry", what="telemetry after broker restart")

        # power loss: the broker publishes the station's last will, retained
        st.proc.kill()
        will = sub.wait(lambda m: m[0] == "picocharge/CP-7/status" and "offline" in m[1],
                        timeout=40, what="last will")
        assert will[1] == '{"state":"offline"}', will
        assert n_before > 0
    finally:
        sub.close()
    assert "wifi-secret-1" not in st.output()


def test_station__thingspeak_writes_carry_the_field_map(station):
    ts = FakeThingSpeak(min_interval=1).start()
    ch = ts.add_channel("WKEY1234")
    try:
        st = station(base_config(thingspeak={"enabled": True, "url": ts.url, "write_key": "WKEY1234",
                                             "channel_id": ch.id, "min_interval_s": 1})).start()
        st.expect("[thingspeak] I: stored entry 3")
        entries = ts.entries(ch.id)
        assert len(entries) >= 3, (entries, st.output())
        e = entries[-1]
        assert sorted(k for k in e if k.startswith("field")) == ["field%d" % i for i in range(1, 9)], e
        assert abs(float(e["field3"]) - 16.0) < 0.5 and abs(float(e["field4"]) - 230) < 3, e
        assert e["field1"] == "24" and e["field2"] == "45" and e["field8"] == "2", e
        assert float(e["field6"]) > 0 and 20 < float(e["field7"]) < 40, e
        # never more often than the channel allows: the fake refused nothing
        assert ts.refused == 0, ts.refused
        assert "WKEY1234" not in st.output()
    finally:
        ts.stop()


def test_station__thingspeak_zero_and_500_are_retried_not_counted(station):
    ts = FakeThingSpeak(min_interval=1).start()
    ch = ts.add_channel("WKEY1234")
    ts.fail_with = 500
    try:
        st = station(base_config(thingspeak={"enabled": True, "url": ts.url, "write_key": "WKEY1234",
                                             "min_interval_s": 1})).start()
        line = st.expect("[thingspeak] W: write failed: HTTP 500")
        # the wait as it is (min_interval_s 1 with jitter), not truncated to "retry in 0s"
        wait = line.rsplit("retry in ", 1)[1]
        assert wait.endswith("s") and len(wait.split(".")[1]) == 2 and 1.0 <= float(wait[:-1]) <= 2.0, line
        ts.fail_with = None
        ts.min_interval = 3600  # the channel's limit is now stricter than the station's setting
        ch.last_write = ts.clock()
        st.expect("[thingspeak] W: write failed: not stored (answer 0")
        assert ts.entries(ch.id) == []
        ts.min_interval = 0
        st.expect("[thingspeak] I: stored entry 1", timeout=60)
        assert len(ts.entries(ch.id)) >= 1
    finally:
        ts.stop()


def _scripted_http(answers):
    """A TCP server on 127.0.0.1 answering its n-th connection with answers[n] (bytes, or None:
    read the request and never answer). (the listening socket, the requests read)"""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    requests = []

    def serve():
        for ans in answers:
            c, _ = srv.accept()
            c.settimeout(30)
            req = b""
            while b"\r\n\r\n" not in req or len(req.split(b"\r\n\r\n", 1)[1]) < int(
                    req.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0]):
                got = c.recv(4096)
                if not got:
                    break
                req += got
            requests.append(req)
            if ans is None:
                c.recv(1)    # until the station gives up and closes
            else:
                c.sendall(ans)
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, requests


def test_station__thingspeak_write_without_an_answer_times_out_and_an_oversized_one_is_refused(station):
    """httpc polls its socket against one deadline (15 s for a write), no wait_for: a server that
    takes the write and never answers is given up, one that answers more than 1 KB is refused
    without the answer being held, and the next write is stored."""
    srv, requests = _scripted_http([None, b"HTTP/1.0 200 OK\r\n\r\n" + b"7" * 2000,
                          b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n17"])
    try:
        url = "http://127.0.0.1:%d" % srv.getsockname()[1]
        st = station(base_config(thingspeak={"enabled": True, "url": url, "write_key": "WKEY1234",
                                             "min_interval_s": 1})).start()
        t0 = time.monotonic()
        st.expect("[thingspeak] W: write failed: timeout: the server did not answer in time", timeout=40)
        assert time.monotonic() - t0 >= 14, "gave up before the 15 s deadline"
        st.expect("[thingspeak] W: write failed: an answer longer than 1024 bytes", timeout=30)
        st.expect("[thingspeak] I: stored entry 17", timeout=30)
        assert len(requests) == 3, requests
        for req in requests:
            assert req.startswith(b"POST /update HTTP/1.0\r\n") and b"api_key=WKEY1234&field1=" in req, req
    finally:
        srv.close()


def test_station__bad_config_is_refused_naming_the_key(station):
    st = station({"station_id": "CP-7", "mqtt": {"enabled": True, "port": 1883}}).start()
    rc = st.wait(15)
    assert rc == 78, (rc, st.output())
    assert "[config] E: config key 'mqtt.host': is required when mqtt.enabled is true" in st.output(), st.output()


def test_station__missing_ca_cert_file_is_a_config_error(station):
    st = station(base_config(ocpp={"url": "wss://127.0.0.1:9/ocpp", "ca_cert": "ca.der"})).start()
    assert st.wait(15) == 78, st.output()
    assert ("[config] E: config key 'ocpp.ca_cert': cannot read ca.der on the board's flash (missing?): "
            "copy the CA there with `picocharge provision --ca-cert FILE`") in st.output(), st.output()


def test_station__missing_config_says_how_to_fix(station, tmp_path):
    st = station({"station_id": "CP-7"})
    (st.flash / "config.json").unlink()
    st.start()
    assert st.wait(15) == 78
    assert "config.json not found: provision the board (picocharge provision)" in st.output(), st.output()


def test_station__bad_dht_reads_never_stop_the_loop(station):
    port = free_port()
    st = station(base_config(web={"enabled": True, "port": port}),
                 scenario={"dht": {"error_rate": 0.7}, "seed": 3}).start()
    for _ in range(4):
        st.expect("[meter] I:", timeout=20)
    s = get_json("http://127.0.0.1:%d/api/status" % port)
    assert s["dht_errors"] > 0, s
    assert s["readings"]["voltage_v"] > 200, s


def test_station__wifi_drop_and_reconnect(station, mqtt_broker):
    st = station(base_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": mqtt_broker.port,
                                   "interval_s": 1}, wifi={"ssid": "shed", "password": "x", "timeout_s": 2}),
                 scenario={"wifi": {"drops": [[3, 6]]}}).start()
    st.expect("[mqtt] I: connected")
    st.expect("[wifi] W: link lost", timeout=10)
    st.expect("[wifi] I: up", timeout=20)
    st.expect("[mqtt] I: connected", timeout=20)
    # sampling went on during the outage
    assert st.output().count("[meter] I:") >= 5, st.output()


def test_station__clock_set_by_ntp_once_wifi_is_up_retried_until_it_answers(station):
    """TLS checks certificate dates against the board's clock, which a Pico W starts at
    2021-01-01: the Wi-Fi task sets it from wifi.ntp_host once per boot."""
    st = station(base_config(), name="ok").start()
    st.expect("[board] I: clock from the host (as NTP from pool.ntp.org would set it)")
    st.expect("[wifi] I: clock set from pool.ntp.org")
    # no answer (a site that drops NTP): said, and tried again at the next connection only
    st2 = station(base_config(wifi={"ssid": "shed", "password": "x", "ntp_host": "time.example"}), name="silent",
                  scenario={"wifi": {"ntp": False, "drops": [[2, 3]]}}).start()
    st2.expect("[wifi] W: no time from time.example: TLS may refuse certificates until the clock is set")
    st2.expect("[wifi] W: link lost", timeout=10)
    st2.expect("[wifi] I: up", timeout=10)
    st2.expect("[wifi] W: no time from time.example")
    # ntp_host "" : never asked
    st3 = station(base_config(wifi={"ssid": "shed", "password": "x", "ntp_host": ""}), name="off").start()
    st3.expect("[meter] I:")
    st3.expect("[meter] I:")
    assert "clock from" not in st3.output() and "no time from" not in st3.output(), st3.output()


def test_station__over_temperature_opens_relay_and_recovers_with_hysteresis(station):
    port = free_port()
    st = station(base_config(web={"enabled": True, "port": port}, safety={"max_temp_c": 50, "hysteresis_c": 5}),
                 scenario={"timeline": [[3, "dht.temp_c", 60.0], [9, "dht.temp_c", 47.0], [13, "dht.temp_c", 40.0]]}).start()
    st.expect("[board] I: relay closed")
    st.expect("[app] E: enclosure", timeout=15)
    st.expect("[board] I: relay open", timeout=5)
    s = get_json("http://127.0.0.1:%d/api/status" % port)
    assert s["fault"] == "HighTemperature" and s["relay"] is False and s["status"] == "Faulted", s
    # 47 degC is below the limit but not below limit - hysteresis: still open
    for _ in range(4):   # ~3.5 s of the board's own time
        st.expect("[meter] I:")
    s = get_json("http://127.0.0.1:%d/api/status" % port)
    assert s["fault"] == "HighTemperature" and s["relay"] is False, (s, st.output())
    st.expect("fault cleared", timeout=15)
    st.expect("[board] I: relay closed", timeout=5)


def test_station__status_page_shows_state_never_secrets(station):
    port = free_port()
    cfg = base_config(web={"enabled": True, "port": port},
                      mqtt={"enabled": True, "host": "127.0.0.1", "port": free_port(), "password": "mq-secret-9"},
                      thingspeak={"enabled": True, "url": "http://127.0.0.1:%d" % free_port(), "write_key": "TSKEYSECRET"})
    st = station(cfg).start()
    st.expect("[web] I: status page on port %d" % port)
    st.expect("[meter] I:")
    page = urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5).read().decode()
    api = urllib.request.urlopen("http://127.0.0.1:%d/api/status" % port, timeout=5).read().decode()
    assert "<title>PicoCharge CP-7</title>" in page, page[:300]
    s = json.loads(api)
    assert s["station_id"] == "CP-7" and s["board"] == "unix" and s["mem_free"] > 0 and s["uptime_s"] >= 0, s
    assert set(s["links"]) == {"wifi", "ocpp", "mqtt", "thingspeak"} and s["links"]["wifi"] == "up", s
    for secret in ("wifi-secret-1", "mq-secret-9", "TSKEYSECRET"):
        assert secret not in page and secret not in api and secret not in st.output(), secret


def test_station__full_firmware_long_run_in_a_pico_sized_heap(station, mqtt_broker):
    """Every task at once, sampling each second, in -X heapsize=192K (~ a Pico W's heap on 64 bit)."""
    ts = FakeThingSpeak(min_interval=1).start()
    ts.add_channel("K")
    port = free_port()
    try:
        st = station(base_config(web={"enabled": True, "port": port},
                                 mqtt={"enabled": True, "host": "127.0.0.1", "port": mqtt_broker.port, "interval_s": 1},
                                 thingspeak={"enabled": True, "url": ts.url, "write_key": "K", "min_interval_s": 1}),
                     scenario={"dht": {"error_rate": 0.2}, "wifi": {"drops": [[12, 14]]}}, heap="192K").start()
        lows = []
        end = time.monotonic() + 30
        while time.monotonic() < end:
            st.expect("[meter] I:")   # a status read per sample, for 30 s
            try:
                lows.append(get_json("http://127.0.0.1:%d/api/status" % port)["mem_free"])
            except OSError:
                pass
        assert st.proc.poll() is None, st.output()
        assert "MemoryError" not in st.output() and "crashed" not in st.output(), st.output()
        assert st.output().count("[meter] I:") >= 20, st.output()
        # the live heap (after a collection) does not creep down over the run
        assert len(lows) >= 10 and min(lows[-5:]) > 0.8 * max(lows[:5]), lows
    finally:
        ts.stop()


def test_station__ctrl_c_opens_relay_and_stops_the_watchdog(station):
    # mpremote's Ctrl-C is a KeyboardInterrupt; an RP2040 watchdog left running unfed would
    # reset the board ~8 s later, mid-deploy: the board must switch it off
    import signal

    st = station(base_config()).start()
    st.expect("[board] I: relay closed")
    st.expect("[meter] I:")  # the watchdog task has started by the second sample
    st.expect("[meter] I:")
    st.proc.send_signal(signal.SIGINT)
    assert st.wait(10) == 0, st.output()
    tail = st.output().split("[board] I: relay closed", 1)[1]
    # the log line after them may be lost: the interrupt can land with the heap locked
    assert "[board] I: relay open\n[board] I: watchdog stopped" in tail, tail
    assert "Traceback" not in tail, tail


def test_station__status_page_port_in_use_is_said_and_retried(station):
    # valid twin: test_station__status_page_shows_state_never_secrets (the port is free)
    import socket

    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        st = station(base_config(web={"enabled": True, "port": port})).start()
        line = st.expect("[web] W: port %d in use" % port)
        assert "trying again in" in line and line.endswith("s"), line
        st.expect("[meter] I:")
        out = st.output()
        assert "status page on port" not in out and "crashed" not in out, out
    finally:
        busy.close()
    # the port is free again: the page comes up on the next try, announced once it listens
    st.expect("[web] I: status page on port %d" % port, timeout=15)
    assert get_json("http://127.0.0.1:%d/api/status" % port)["station_id"] == "CP-7"
