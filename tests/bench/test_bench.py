"""`picocharge bench` smoke tests: what the generated stations put on the wire (validated
with the ocpp package's own schemas), a short real run against the baseline central system
(figures in the JSON, zero lost readings, a valid PNG), and a defective central system
that loses readings, which the benchmark must catch."""
import asyncio
import json
import struct
import sys
import time
from pathlib import Path

import pytest
import websockets
from click.testing import CliRunner
from ocpp.messages import Call, validate_payload

from picocharge import bench_cs, bench_load, bench_report
from picocharge.cli import cli

HERE = Path(__file__).resolve().parent

SETUP = ["BootNotification", "StatusNotification", "Authorize", "StatusNotification",
         "StartTransaction", "StatusNotification"]
MEASURANDS = [("Energy.Active.Import.Register", "Wh", "Outlet"), ("Current.Import", "A", "Outlet"),
              ("Voltage", "V", "Outlet"), ("Power.Active.Import", "W", "Outlet"),
              ("Temperature", "Celsius", "Body")]


class RecordingCS:
    """A raw OCPP-J server that records every frame and answers like a central system."""

    def __init__(self):
        self.frames = []  # (path, subprotocol, frame)

    async def handler(self, ws):
        async for msg in ws:
            f = json.loads(msg)
            self.frames.append((ws.request.path, ws.subprotocol, f))
            action = f[2]
            now = "2026-11-25T10:00:00.000Z"
            res = {"BootNotification": {"status": "Accepted", "currentTime": now, "interval": 300},
                   "Heartbeat": {"currentTime": now},
                   "Authorize": {"idTagInfo": {"status": "Accepted"}},
                   "StartTransaction": {"transactionId": 42, "idTagInfo": {"status": "Accepted"}},
                   }.get(action, {})
            await ws.send(json.dumps([3, f[1], res]))


async def test_station__frames_are_what_the_firmware_sends_and_pass_ocpp_schemas():
    cs = RecordingCS()
    async with websockets.serve(cs.handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as server:
        port = server.sockets[0].getsockname()[1]
        t0 = time.time()
        spec = {"url": "ws://127.0.0.1:%d/ocpp/" % port, "n": 1, "mode": "paced", "interval": 0.2,
                "heartbeat": 0.5, "t0": t0, "ramp": 0.0, "w0": t0 + 0.3, "w1": t0 + 1.5,
                "drain": 3.0, "open_timeout": 5, "seed": 7, "source_addrs": 1}
        stats = await bench_load._run_step(spec, [1])
    actions = [f[2] for _p, _s, f in cs.frames]
    assert {(p, s) for p, s, _f in cs.frames} == {("/ocpp/BENCH-00001", "ocpp1.6")}, cs.frames[:1]
    assert actions[:6] == SETUP, actions
    assert actions[-2:] == ["StopTransaction", "StatusNotification"], actions
    middle = actions[6:-2]
    assert set(middle) == {"MeterValues", "Heartbeat"}, actions
    # 1.5 s of life at 0.2 s per MeterValues and 0.5 s per Heartbeat
    assert 5 <= middle.count("MeterValues") <= 8 and 2 <= middle.count("Heartbeat") <= 4, actions
    for _p, _s, f in cs.frames:
        await validate_payload(Call(unique_id=f[1], action=f[2], payload=f[3]), "1.6")
    statuses = [f[3]["status"] for _p, _s, f in cs.frames if f[2] == "StatusNotification"]
    assert statuses == ["Available", "Preparing", "Charging", "Available"], statuses
    boot = cs.frames[0][2][3]
    assert boot == {"chargePointVendor": "PicoCharge", "chargePointModel": "bench",
                    "chargePointSerialNumber": "BENCH-00001", "chargeBoxSerialNumber": "BENCH-00001",
                    "firmwareVersion": "bench"}, boot
    mvs = [f[3] for _p, _s, f in cs.frames if f[2] == "MeterValues"]
    for mv in mvs:
        assert mv["transactionId"] == 42 and mv["connectorId"] == 1 and len(mv["meterValue"]) == 1, mv
        sv = mv["meterValue"][0]["sampledValue"]
        got = [(s["measurand"], s["unit"], s["location"]) for s in sv]
        assert got == MEASURANDS, sv
        assert {(s["context"], s["format"]) for s in sv} == {("Sample.Periodic", "Raw")}, sv
    energy = [int(mv["meterValue"][0]["sampledValue"][0]["value"]) for mv in mvs]
    assert energy == sorted(energy) and len(set(energy)) == len(energy), energy
    stop = [f[3] for _p, _s, f in cs.frames if f[2] == "StopTransaction"][0]
    assert stop["transactionId"] == 42 and stop["meterStop"] == energy[-1], (stop, energy)
    assert stats.readings_acked == stats.readings_sent == len(mvs), vars(stats)
    assert stats.tx_started == stats.tx_stopped == 1 and stats.connect_failures == 0, vars(stats)
    # only CALLs sent inside [w0, w1) are in the RTT sample, and each is a real round trip
    assert 0 < stats.calls == len(stats.rtt_ms) < len(cs.frames), (stats.calls, len(cs.frames))
    assert all(0 < r < 1000 for r in stats.rtt_ms), list(stats.rtt_ms)


async def test_station__refused_connection_is_a_connect_failure():
    port = bench_cs.free_port()  # nothing listens there
    t0 = time.time()
    spec = {"url": "ws://127.0.0.1:%d/" % port, "n": 3, "mode": "closed", "interval": 1,
            "heartbeat": 1, "t0": t0, "ramp": 0.0, "w0": t0 + 0.1, "w1": t0 + 0.3,
            "drain": 1.0, "open_timeout": 2, "seed": 1, "source_addrs": 1}
    stats = await bench_load._run_step(spec, [1, 2, 3])
    assert (stats.connected, stats.connect_failures) == (0, 3), vars(stats)
    assert stats.failure_kinds == {"ConnectionRefusedError": 3}, stats.failure_kinds


def _png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    assert data[12:16] == b"IHDR", data[:32]
    return struct.unpack(">II", data[16:24])


def _run_bench(tmp_path, *args):
    out, chart = tmp_path / "r.json", tmp_path / "c.png"
    res = CliRunner().invoke(cli, ["bench", "--target", "baseline", "--steps", "20", "--hold", "2",
                                   "--interval", "0.5", "--heartbeat", "1", "--ramp", "0.3",
                                   "--out", str(out), "--chart", str(chart),
                                   "--workdir", str(tmp_path / "w")] + list(args))
    return res, out, chart


def test_bench__baseline_20_stations_paced_and_closed(tmp_path):
    res, out, chart = _run_bench(tmp_path, "--mode", "both")
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["meta"]["generator_procs"] == 1, doc["meta"]
    assert "generator: 1 process(es)" in res.output, res.output
    steps = doc["steps"]
    assert [(s["target"], s["mode"], s["stations"]) for s in steps] == [
        ("baseline", "paced", 20), ("baseline", "closed", 20)], steps
    for s in steps:
        ev = json.dumps(s, indent=1)
        assert s["connected"] == s["connected_by_window"] == 20, ev
        assert s["connect_failures"] == s["dropped"] == s["unanswered"] == 0, ev
        assert s["transactions_started"] == s["transactions_stopped"] == 20, ev
        assert s["readings_acked"] == s["readings_sent"] == s["readings_stored"] > 0, ev
        assert s["readings_lost"] == 0, ev
        assert s["msgs_per_s"] == s["calls_in_window"] / 2.0, ev
        assert 0 < s["rtt_p50_ms"] <= s["rtt_p95_ms"] <= s["rtt_p99_ms"] <= s["rtt_max_ms"], ev
        assert s["cs_peak_rss_mb"] > 5 and s["cs_cpu_percent"] > 0, ev
        assert s["readings_mqtt"] is None, ev  # the baseline has no uplink
        # one line of the live table per step
        assert bench_report.row(s) in res.output, res.output
    paced, closed = steps
    # paced: 20 stations x (1/0.5 s MeterValues + 1/1 s Heartbeat) for 2 s = 120 CALLs, +-1 per station
    assert 100 <= paced["calls_in_window"] <= 140, json.dumps(paced, indent=1)
    assert closed["msgs_per_s"] > paced["msgs_per_s"], (closed["msgs_per_s"], paced["msgs_per_s"])
    assert _png_size(chart) == (1600, 500)


def test_bench__lost_readings_are_reported_and_fail_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_cs, "baseline_argv", lambda: [
        sys.executable, str(HERE / "lossy_cs.py"), "--host", "127.0.0.1", "--port", "0"])
    res, out, _chart = _run_bench(tmp_path, "--mode", "closed")
    assert res.exit_code == 1, res.output
    s = json.loads(out.read_text())["steps"][0]
    assert s["readings_acked"] > s["readings_stored"] > 0, s
    assert s["readings_lost"] == s["readings_acked"] - s["readings_stored"], s
    assert "readings lost (acknowledged but not stored): baseline@20: %d" % s["readings_lost"] in res.output, res.output


def test_bench__a_central_system_too_busy_to_answer_metrics_is_asked_again(tmp_path, monkeypatch):
    """/metrics timing out right after the window (the loop held 11 s by a StopTransaction) is
    asked again until the bench's catch-up time: the readings are counted, none reported lost.
    Before, the first timeout ended the count: 'stored n/a', 'lost n/a', and the run passed."""
    monkeypatch.setattr(bench_cs, "baseline_argv", lambda: [
        sys.executable, str(HERE / "stalling_cs.py"), "--host", "127.0.0.1", "--port", "0"])
    res, out, _chart = _run_bench(tmp_path, "--mode", "closed")
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())["steps"][0]
    assert s["metrics_error"] is None, s
    assert s["readings_stored"] == s["readings_acked"] > 0, s
    assert s["readings_lost"] == 0, s


@pytest.mark.parametrize("steps,ok", [("10,20,40", True), ("10, x", False), ("0", False), ("", False)])
def test_bench__steps_option(tmp_path, steps, ok):
    from picocharge.cmd_bench import _steps

    if ok:
        assert _steps(None, None, steps) == [10, 20, 40]
    else:
        with pytest.raises(Exception) as e:
            _steps(None, None, steps)
        assert "station" in str(e.value), e.value


def test_report__percentile_nearest_rank():
    xs = [float(i) for i in range(1, 101)]
    assert [bench_report.percentile(xs, q) for q in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert bench_report.percentile([], 50) is None
    assert bench_report.percentile([3.0], 99) == 3.0


def test_cs__prometheus_text_and_uplink_labels():
    text = ("# HELP x\n# TYPE picocharge_readings_stored_total counter\n"
            "picocharge_readings_stored_total 1234\n"
            'picocharge_uplink_delivered_total{uplink="mqtt"} 1200\n'
            'picocharge_uplink_delivered_total{uplink="thingspeak"} 7\n'
            "garbage line\n")
    m = bench_cs.parse_prometheus(text)
    assert bench_cs.stored_readings(m) == 1234, m
    assert bench_cs.uplink_counts(m, bench_cs.DELIVERED_METRIC) == {"mqtt": 1200, "thingspeak": 7}, m
    assert bench_cs.stored_readings({"other": 1.0}) is None


async def test_station__refused_connection_retries_with_the_firmware_backoff_then_gives_up():
    port = bench_cs.free_port()  # nothing listens there
    t0 = time.time()
    spec = {"url": "ws://127.0.0.1:%d/" % port, "n": 1, "mode": "closed", "interval": 1,
            "heartbeat": 1, "t0": t0, "ramp": 0.0, "w0": t0 + 0.1, "w1": t0 + 0.3,
            "drain": 8.0, "open_timeout": 2, "seed": 1, "source_addrs": 1, "retry_for": 2.0}
    stats = await bench_load._run_step(spec, [1])
    # first try at once, a retry after 0.5-1 s, possibly a second after 1-2 s, then give up
    assert (stats.connected, stats.connect_failures) == (0, 1), vars(stats)
    assert 1 <= stats.connect_retries <= 2, vars(stats)
    assert stats.failure_kinds == {"ConnectionRefusedError": stats.connect_retries + 1}, stats.failure_kinds


def test_report__timeline_slices_and_rss_slope():
    w0 = 1000.0
    rtt_t = [w0 + 0.5, w0 + 1.5, w0 + 2.5, w0 + 3.5, w0 + 9.0]   # the last is outside [w0, w0+4)
    rtt_ms = [1.0, 2.0, 30.0, 4.0, 99.0]
    rss = [(w0 + 1.0, 100 * 2**20), (w0 + 2.0, 101 * 2**20), (w0 + 4.0, 103 * 2**20)]
    tl = bench_report.timeline(rtt_t, rtt_ms, rss, w0, w0 + 4.0, 2.0)
    assert tl == [{"t_s": 2.0, "msgs_per_s": 1.0, "rtt_p50_ms": 1.0, "rtt_p99_ms": 2.0, "rtt_max_ms": 2.0,
                   "cs_rss_mb": 101.0},
                  {"t_s": 4.0, "msgs_per_s": 1.0, "rtt_p50_ms": 4.0, "rtt_p99_ms": 30.0, "rtt_max_ms": 30.0,
                   "cs_rss_mb": 103.0}], tl
    assert bench_report.slope_per_min([(0.0, 100.0), (30.0, 101.0), (60.0, 102.0)]) == 2.0
    assert bench_report.slope_per_min([(0.0, 100.0)]) is None


def test_cs__gc_pauses_and_summary_from_the_gateway_log(tmp_path):
    log = tmp_path / "ours.log"
    log.write_text(
        "2026-11-25 11:28:27,843 INFO picocharge.gateway.app: gc pause 31.0 ms (cpu 30.7 ms, generation 0, 11 collected)\n"
        "2026-11-25 11:28:29,500 INFO picocharge.gateway.app: station=BENCH-00001 connected from 127.0.0.1:5\n"
        "2026-11-25 11:28:31,250 INFO picocharge.gateway.app: gc pause 184.2 ms (cpu 91.2 ms, generation 1, 0 collected)\n"
        "2026-11-25 11:30:28,699 INFO picocharge.gateway.app: gc: 0 full collections, longest pause 184.2 ms (generation 1)\n")
    t0 = time.mktime(time.strptime("2026-11-25 11:28:27", "%Y-%m-%d %H:%M:%S"))
    assert bench_cs.gc_pauses(log) == [(t0 + 0.843, 31.0), (t0 + 4.25, 184.2)], bench_cs.gc_pauses(log)
    assert bench_cs.gc_summary(log) == (0, 184.2)
    assert bench_cs.gc_summary(tmp_path / "missing.log") == (None, None)
