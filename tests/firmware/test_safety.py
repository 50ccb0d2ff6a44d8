"""Enclosure protection when the DHT11 itself fails: a dead sensor must not leave the
over-temperature protection blind on its last good reading."""
import json
import time
import urllib.request

import overtemp
from support.dual import mp_run
from support.net import free_port
from support.broker import Sub
from support.firmware import base_config, get_json


def _cycles(ot, oks):
    return [ot.read_cycle(ok) for ok in oks]


def test_overtemp__transient_misses_are_not_a_fault():
    ot = overtemp.OverTemp(50, 5, dead_cycles=3)
    assert _cycles(ot, [False, False, True, False, False, True]) == [False] * 6
    assert ot.fault() == (None, None), ot.fault()


def test_overtemp__dead_sensor_faults_and_clears_on_a_valid_read():
    ot = overtemp.OverTemp(50, 5, dead_cycles=3)
    assert _cycles(ot, [True, False, False, False, False]) == [False, False, False, True, True]
    assert ot.fault() == ("OtherError", "DHT11 not answering"), ot.fault()
    assert ot.read_cycle(True) is False and ot.fault() == (None, None)


def test_overtemp__dead_sensor_hides_a_latched_over_temperature_until_reads_resume():
    ot = overtemp.OverTemp(50, 5, dead_cycles=2)
    ot.read_cycle(True)
    assert ot.update(60) is True and ot.fault() == ("HighTemperature", None)
    _cycles(ot, [False, False])
    assert ot.update(None) is True and ot.fault()[0] == "OtherError", ot.fault()
    ot.read_cycle(True)
    assert ot.update(47) is True and ot.fault() == ("HighTemperature", None)  # hysteresis still holds
    assert ot.update(44) is False and ot.fault() == (None, None)


def test_config__dht_dead_cycles_defaults_to_3_and_is_checked():
    import config

    assert config.validate({"station_id": "CP-1"})["safety"]["dht_dead_cycles"] == 3
    assert config.validate({"station_id": "CP-1", "safety": {"dht_dead_cycles": 10}})["safety"]["dht_dead_cycles"] == 10
    try:
        config.validate({"station_id": "CP-1", "safety": {"dht_dead_cycles": 0}})
    except config.ConfigError as e:
        assert e.key == "safety.dht_dead_cycles" and "out of range 1..100" in str(e), e
    else:
        raise AssertionError("0 read cycles accepted")


def test_overtemp__same_results_under_micropython():
    out = mp_run(r"""
import overtemp
ot = overtemp.OverTemp(50, 5)
r = [ot.read_cycle(ok) for ok in (True, False, False, False)]
print(r, ot.fault())
ot.read_cycle(True)
print(ot.update(60), ot.fault())
""")
    assert out.split("\n")[:2] == ["[False, False, False, True] ('OtherError', 'DHT11 not answering')",
                                   "True ('HighTemperature', None)"], out


def _poll(port, pred, timeout, st):
    end = time.monotonic() + timeout
    s = None
    while time.monotonic() < end:
        try:
            s = get_json("http://127.0.0.1:%d/api/status" % port)
        except OSError:
            s = None
        if s is not None and pred(s):
            return s
        time.sleep(0.25)
    raise AssertionError("status never matched; last %r; console:\n%s" % (s, st.output()[-3000:]))


def test_station__transient_dht_errors_keep_the_reading_and_the_relay(station):
    port = free_port()
    st = station(base_config(web={"enabled": True, "port": port}, sensors={"interval_s": 1, "dht_retries": 1}),
                 scenario={"seed": 7, "dht": {"error_rate": 0.3}}).start()
    for _ in range(8):
        st.expect("[meter] I:", timeout=20)
    s = get_json("http://127.0.0.1:%d/api/status" % port)
    out = st.output()
    assert "[dht] W: no valid reading" in out, out  # whole read cycles did fail...
    assert s["dht_errors"] > 0 and s["fault"] is None and s["relay"] is True, s  # ...but never 3 in a row
    assert s["readings"]["temp_c"] == 24.0 and s["readings"]["humidity"] == 45.0, s
    assert "relay opened" not in out and "[board] I: relay open" not in out, out


def test_station__dead_dht_opens_relay_reports_no_reading_and_recovers(station, mqtt_broker):
    # the audit's scenario: the DHT11 stops answering at 4 s, then the enclosure heats up
    port = free_port()
    sub = Sub(mqtt_broker.port)
    cfg = base_config(web={"enabled": True, "port": port}, sensors={"interval_s": 1, "dht_retries": 1},
                      safety={"dht_dead_cycles": 2},
                      mqtt={"enabled": True, "host": "127.0.0.1", "port": mqtt_broker.port, "interval_s": 1})
    st = station(cfg, scenario={"timeline": [[4, "dht.error_rate", 1.0], [5, "dht.temp_c", 70.0],
                                             [18, "dht.error_rate", 0.0], [23, "dht.temp_c", 24.0]]}).start()
    try:
        st.expect("[board] I: relay closed")
        line = st.expect("[app] E: DHT11 not answering for 2 read cycles: relay opened", timeout=20)
        st.expect("[board] I: relay open", timeout=5)
        s = get_json("http://127.0.0.1:%d/api/status" % port)
        assert (s["fault"], s["fault_info"], s["relay"], s["status"]) == (
            "OtherError", "DHT11 not answering", False, "Faulted"), s
        assert s["readings"]["temp_c"] is None and s["readings"]["humidity"] is None, s
        status = sub.wait(lambda m: m[0] == "picocharge/CP-7/status" and "OtherError" in m[1], what="fault status")
        assert json.loads(status[1]) == {"state": "online", "status": "Faulted", "fault": "OtherError",
                                         "relay": False}, status
        n = len(sub.msgs)
        tel = sub.wait(lambda m: sub.msgs.index(m) >= n and m[0] == "picocharge/CP-7/telemetry",
                       what="telemetry while the sensor is dead")
        assert "temp_c" not in json.loads(tel[1]) and "humidity" not in json.loads(tel[1]), tel

        # the sensor answers again, and what it reads (70 degC) is too hot: still open
        st.expect("[app] E: enclosure 70 degC above 50: relay opened", timeout=20)
        s = get_json("http://127.0.0.1:%d/api/status" % port)
        assert (s["fault"], s["fault_info"], s["relay"]) == ("HighTemperature", None, False), s
        assert s["readings"]["temp_c"] == 70.0, s
        # cooled down: the fault clears and the relay closes again
        st.expect("HighTemperature fault cleared", timeout=20)
        st.expect("[board] I: relay closed", timeout=5)
        s = _poll(port, lambda s: s["relay"], 5, st)
        assert s["fault"] is None and s["fault_info"] is None and s["readings"]["temp_c"] < 45, s
    finally:
        sub.close()
    assert "sample:" not in st.output(), st.output()  # no exception in the sample loop
