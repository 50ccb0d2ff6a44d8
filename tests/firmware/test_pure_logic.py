"""Pure firmware logic, under CPython and under the unix-port micropython."""
import array
import json
import math

import pytest

import reconnect
import config
import fields
import mains
import overtemp
import thingspeak_upload

from support.dual import mp_run


# --- config: valid / invalid pairs ---------------------------------------------------------

def test_config__valid_minimal_fills_defaults():
    cfg = config.validate({"station_id": "CP-1"})
    assert cfg["mqtt"]["port"] == 1883 and cfg["thingspeak"]["min_interval_s"] == 15, cfg
    assert cfg["sensors"]["mains_hz"] == 50
    assert cfg["ocpp"]["clock_aligned_s"] == 900, cfg["ocpp"]  # idle stations report every 15 min


@pytest.mark.parametrize("data,key,words", [
    ({}, "station_id", "is required"),
    ({"station_id": "CP 1"}, "station_id", "1-48 characters"),
    ({"station_id": "CP-1", "mqtt": {"port": 70000}}, "mqtt.port", "out of range"),
    ({"station_id": "CP-1", "mqtt": {"port": "1883"}}, "mqtt.port", "expected int, got str"),
    ({"station_id": "CP-1", "mqtt": {"prot": 1}}, "mqtt.prot", "unknown key"),
    ({"station_id": "CP-1", "ocpp": {"url": "http://cs/ocpp"}}, "ocpp.url", "ws:// or wss://"),
    ({"station_id": "CP-1", "ocpp": {"url": "cs:9000"}}, "ocpp.url", "not a URL"),
    ({"station_id": "CP-1", "ocpp": {"clock_aligned_s": -1}}, "ocpp.clock_aligned_s", "out of range"),
    ({"station_id": "CP-1", "thingspeak": {"enabled": True}}, "thingspeak.write_key", "required"),
    ({"station_id": "CP-1", "mqtt": {"enabled": True}}, "mqtt.host", "required"),
    ({"station_id": "CP-1", "log_level": "loud"}, "log_level", "not one of"),
    ({"station_id": "CP-1", "wifi": "home"}, "wifi", "expected an object"),
    ({"station_id": "CP-1", "ocpp": {"ca_cert": "my ca.der"}}, "ocpp.ca_cert", "not a file path"),
    ({"station_id": "CP-1", "mqtt": {"ca_cert": "x" * 65}}, "mqtt.ca_cert", "at most 64"),
    ({"station_id": "CP-1", "thingspeak": {"ca_cert": True}}, "thingspeak.ca_cert", "expected str"),
])
def test_config__invalid_names_key(data, key, words):
    with pytest.raises(config.ConfigError) as e:
        config.validate(data)
    assert e.value.key == key and words in str(e.value), str(e.value)


def test_config__ca_cert_paths_valid_and_checked_at_load(tmp_path, monkeypatch):
    cfg = config.validate({"station_id": "CP-1"})
    assert (cfg["ocpp"]["ca_cert"], cfg["mqtt"]["ca_cert"], cfg["thingspeak"]["ca_cert"]) == ("", "", "")
    monkeypatch.chdir(tmp_path)  # the board's flash
    (tmp_path / "ca.der").write_bytes(bytes.fromhex("308201"))
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "notes.txt").write_text("hello")
    data = {"station_id": "CP-1", "ocpp": {"ca_cert": "ca.der"}, "mqtt": {"ca_cert": "ca.pem"}}
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert config.load()["mqtt"]["ca_cert"] == "ca.pem"
    for ca, words in (("gone.der", "cannot read gone.der on the board's flash (missing?): copy the CA "
                                   "there with `picocharge provision --ca-cert FILE`"),
                      ("notes.txt", "notes.txt is not a PEM or DER X.509 certificate")):
        data["thingspeak"] = {"ca_cert": ca}
        (tmp_path / "config.json").write_text(json.dumps(data))
        with pytest.raises(config.ConfigError) as e:
            config.load()
        assert e.value.key == "thingspeak.ca_cert" and str(e.value).endswith(words), str(e.value)


def test_config__secret_never_in_error_or_redacted_copy():
    with pytest.raises(config.ConfigError) as e:
        config.validate({"station_id": "CP-1", "wifi": {"password": 12345678}})
    assert "12345678" not in str(e.value), str(e.value)
    red = config.redact(config.validate({"station_id": "CP-1", "wifi": {"password": "hunter2"},
                                         "mqtt": {"password": "", "user": "u"}}))
    assert red["wifi"]["password"] == "***" and red["mqtt"]["password"] == "" and red["mqtt"]["user"] == "u", red


def test_config__load_reports_missing_and_bad_json(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(str(tmp_path / "nope.json"))
    p = tmp_path / "config.json"
    p.write_text("{bad")
    with pytest.raises(config.ConfigError, match="not valid JSON"):
        config.load(str(p))


# --- mains maths against known waveforms ---------------------------------------------------

def _waves(irms, vrms, phi, n_cycles=4, spc=40, off=32768, i_scale=0.0015, v_scale=0.015, noise=0.0, seed=1):
    import random

    rnd = random.Random(seed)
    n = n_cycles * spc
    bi, bv = array.array("H", [0] * n), array.array("H", [0] * n)
    for k in range(n):
        a = 2 * math.pi * k / spc
        bi[k] = int(round(off + irms * math.sqrt(2) / i_scale * math.sin(a - phi) + rnd.gauss(0, noise)))
        bv[k] = int(round(off + vrms * math.sqrt(2) / v_scale * math.sin(a) + rnd.gauss(0, noise)))
    return bi, bv, n


@pytest.mark.parametrize("irms,vrms,phi,off", [
    (16.0, 230.0, 0.0, 32768), (6.0, 230.0, 0.3, 30000), (32.0, 240.0, 0.1, 33500),
    (0.5, 120.0, 0.0, 32768), (10.0, 110.0, 0.5, 31000),
])
def test_mains__rms_and_power_within_half_percent(irms, vrms, phi, off):
    bi, bv, n = _waves(irms, vrms, phi, off=off, noise=20)
    i, v, p = mains.analyse(bi, bv, n, 0.0015, 0.015)
    assert abs(i - irms) / irms < 0.005, (i, irms)
    assert abs(v - vrms) / vrms < 0.005, (v, vrms)
    expect_p = irms * vrms * math.cos(phi)
    assert abs(p - expect_p) / expect_p < 0.01, (p, expect_p)


def test_mains__fixed_offset_used_when_given():
    bi, bv, n = _waves(16.0, 230.0, 0.0, off=32768)
    i, _v, _p = mains.analyse(bi, bv, n, 0.0015, 0.015, i_offset=32768.0, v_offset=32768.0)
    assert abs(i - 16.0) < 0.05, i
    # a wrong fixed offset adds its DC in quadrature: the auto offset exists for a reason
    i2, _v, _p = mains.analyse(bi, bv, n, 0.0015, 0.015, i_offset=32000.0)
    expect = math.hypot(16.0, 768 * 0.0015)
    assert abs(i2 - expect) < 0.02, (i2, expect)


def test_mains__chip_temperature_per_datasheet():
    assert abs(mains.chip_temp(int(0.706 / 3.3 * 65535)) - 27.0) < 0.1
    raw = int((0.706 - 10 * 0.001721) / 3.3 * 65535)
    assert abs(mains.chip_temp(raw) - 37.0) < 0.1


def test_mains__energy_integrates_trapezoid():
    m = mains.EnergyMeter(100.0)
    m.add(3600.0, 0)
    m.add(3600.0, 1000)       # 1 s at 3.6 kW = 1 Wh
    m.add(0.0, 2000)          # ramp down: 0.5 Wh
    assert abs(m.wh - 101.5) < 1e-9, m.wh
    m.add(-50.0, 3000)        # export is not metered
    assert abs(m.wh - 101.5) < 1e-9, m.wh


def test_mains__energy_register_keeps_counting_in_single_precision():
    # A Pico W's floats are float32 (the unix port's are doubles): numpy.float32 readings make
    # the meter's arithmetic single precision here. At 4 MWh a float32 register has a spacing
    # of 0.25 Wh, so adding 5.1 Wh at a time to it would lose ~0.1 Wh per sample.
    import numpy  # comes with matplotlib (the test extra)

    m = mains.EnergyMeter(4000000.0)
    p = numpy.float32(3680.0)
    for k in range(1001):
        m.add(p, k * 5000)    # 5 s at 3.68 kW: 5.11 Wh a sample
    want = 4000000.0 + 1000 * 3680.0 * 5 / 3600
    assert abs(float(m.wh) - want) < 0.5, (float(m.wh), want)


# --- safety --------------------------------------------------------------------------------

def test_safety__trips_above_limit_and_clears_below_hysteresis():
    o = overtemp.OverTemp(50.0, 5.0)
    seq = [(40, False), (50, False), (51, True), (48, True), (45, True), (44.9, False), (None, False), (52, True), (None, True)]
    got = [(t, o.update(t)) for t, _ in seq]
    assert got == seq, got


# --- backoff -------------------------------------------------------------------------------

def test_backoff__exponential_with_jitter_and_cap():
    b = reconnect.Backoff(1, 30)
    waits = [b.next() for _ in range(10)]
    for n, w in enumerate(waits):
        d = min(30, 2 ** n)
        assert d / 2 <= w <= d, (n, w)
    b.reset()
    assert b.next() <= 1


# --- ThingSpeak body and answers -----------------------------------------------------------

def test_thingspeak__body_follows_field_map():
    r = {"temp_c": 24.0, "humidity": 45.0, "current_a": 16.01, "voltage_v": 230.1, "power_w": 3662.1,
         "energy_wh": 12.3456, "chip_temp_c": 29.9, "status": "Charging", "fault": None}
    body = thingspeak_upload.update_body("K&Y", r)
    assert body == ("api_key=K%26Y&field1=24&field2=45&field3=16.01&field4=230.1&field5=3662.1"
                    "&field6=12.346&field7=29.9&field8=2"), body


def test_thingspeak__answers():
    assert thingspeak_upload.parse_answer(200, b"17") == 17
    for status, body, words in [(200, b"0", "not stored"), (500, b"", "HTTP 500"), (200, b"<html>", "unexpected")]:
        with pytest.raises(OSError, match=words):
            thingspeak_upload.parse_answer(status, body)


def test_fields__mqtt_payloads():
    r = {"temp_c": 24.0, "current_a": None, "status": "Faulted", "fault": "HighTemperature"}
    assert json.loads(fields.telemetry_json(r)) == {"temp_c": 24.0, "status": "Faulted", "fault": "HighTemperature"}
    assert fields.status_code("Faulted") == 8 and fields.status_name(2) == "Charging"


# --- the same logic under MicroPython --------------------------------------------------------

def test_pure_logic__same_results_under_micropython():
    code = r"""
import json, math, array
import config, mains, overtemp, thingspeak_upload
out = {}
out['cfg'] = config.validate({'station_id': 'CP-1', 'mqtt': {'port': 1884}})['mqtt']['port']
try:
    config.validate({'station_id': 'CP-1', 'mqtt': {'port': 'x'}})
except config.ConfigError as e:
    out['err'] = [e.key, str(e)]
n = 160
bi = array.array('H', bytearray(2 * n)); bv = array.array('H', bytearray(2 * n))
for k in range(n):
    a = 2 * math.pi * k / 40
    bi[k] = int(32768 + 16 * math.sqrt(2) / 0.0015 * math.sin(a) + 0.5)
    bv[k] = int(32768 + 230 * math.sqrt(2) / 0.015 * math.sin(a) + 0.5)
out['mains'] = [round(x) for x in mains.analyse(bi, bv, n, 0.0015, 0.015)]
o = overtemp.OverTemp(50, 5)
out['safety'] = [o.update(t) for t in (40, 51, 46, 44)]
out['ts'] = thingspeak_upload.update_body('K', {'temp_c': 24.0, 'status': 'Charging'})
print(json.dumps(out))
"""
    got = json.loads(mp_run(code).strip().splitlines()[-1])
    assert got == {"cfg": 1884, "err": ["mqtt.port", "config key 'mqtt.port': expected int, got str 'x'"],
                   "mains": [16, 230, 3680], "safety": [False, True, True, False],
                   "ts": "api_key=K&field1=24&field8=2"}, got
