"""`picocharge bench --target both`: our gateway (with a real mosquitto behind its MQTT
uplink) and the baseline, side by side, 20 stations, paced and closed loop."""
import json

from click.testing import CliRunner

from picocharge.cli import cli


def test_bench__ours_and_baseline_side_by_side_with_mqtt(tmp_path):
    out, chart = tmp_path / "r.json", tmp_path / "c.png"
    res = CliRunner().invoke(cli, ["bench", "--target", "both", "--mode", "both", "--steps", "20",
                                   "--hold", "2", "--interval", "0.5", "--heartbeat", "1",
                                   "--ramp", "0.3", "--out", str(out), "--chart", str(chart),
                                   "--workdir", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    steps = doc["steps"]
    assert [(s["target"], s["mode"]) for s in steps] == [
        ("ours", "paced"), ("baseline", "paced"), ("ours", "closed"), ("baseline", "closed")], steps
    for s in steps:
        ev = json.dumps(s, indent=1)
        assert s["connected"] == 20 and s["connect_failures"] == s["dropped"] == 0, ev
        assert s["readings_acked"] == s["readings_stored"] > 0 and s["readings_lost"] == 0, ev
        assert s["transactions_started"] == s["transactions_stopped"] == 20, ev
        # the central system's CPU per CALL: its CPU seconds in the window over the CALLs in it
        # (the window's length is the hold, give or take the marker thread's timing)
        us = s["cs_cpu_us_per_msg"]
        assert us > 0 and 0.5 < us / (s["cs_cpu_percent"] * 1e4 / s["msgs_per_s"]) < 2, ev
        if s["target"] == "ours":
            # every stored reading reached the broker, from every station, and the gateway agrees
            assert s["readings_mqtt"] == s["readings_stored"] and s["mqtt_missing"] == 0, ev
            assert s["mqtt_stations"] == 20, ev
            assert s["uplinks_delivered"]["mqtt"] == s["readings_stored"], ev
            # the collector's share of that CPU, from the gateway's own counters
            assert 0 <= s["cs_gc_cpu_share"] < 100, ev
        else:
            assert s["readings_mqtt"] is None and s["uplinks_delivered"] == {}, ev
            assert s["cs_gc_cpu_share"] is None, ev
    ratios = {r["mode"]: r["throughput_ratio"] for r in doc["ratios"]}
    by = {(s["target"], s["mode"]): s["msgs_per_s"] for s in steps}
    assert ratios == {m: by[("ours", m)] / by[("baseline", m)] for m in ("paced", "closed")}, ratios
    assert "ours/baseline msgs/s at 20 stations (closed): %.2f" % ratios["closed"] in res.output, res.output
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
