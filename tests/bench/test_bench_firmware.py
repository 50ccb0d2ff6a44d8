"""`picocharge bench --firmware`: the real firmware under the unix port as the stations."""
import json

from click.testing import CliRunner

from picocharge.cli import cli


def test_bench__firmware_stations_against_the_baseline(tmp_path, micropython):
    out, chart = tmp_path / "r.json", tmp_path / "c.png"
    res = CliRunner().invoke(cli, ["bench", "--target", "baseline", "--firmware", "--steps", "2",
                                   "--hold", "8", "--interval", "1", "--heartbeat", "3",
                                   "--out", str(out), "--chart", str(chart),
                                   "--workdir", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    assert "the real firmware under the unix port" in res.output, res.output
    doc = json.loads(out.read_text())
    s = doc["steps"][0]
    ev = json.dumps(s, indent=1)
    assert (s["target"], s["mode"], s["stations"]) == ("baseline", "firmware", 2), ev
    assert s["connected"] == s["connected_at_end"] == 2 and s["connect_failures"] == 0, ev
    # the charging scenario presses the button at 5 s: a transaction, then MeterValues every 1 s
    assert s["readings_stored"] >= 4, ev
    assert s["msgs_per_s"] > 0 and s["calls_in_window"] == round(s["msgs_per_s"] * 8), ev
    assert s["rtt_p50_ms"] is None and s["readings_lost"] is None, ev  # not observable here
    assert s["firmware_exit_codes"] == [-15], ev  # stopped by us, none crashed
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the stations' flash folders hold what the bench wrote: config validated by the firmware's schema
    cfg = json.loads((tmp_path / "w" / "baseline-firmware-2" / "flash" / "BENCH-001" / "config.json").read_text())
    assert cfg["station_id"] == "BENCH-001" and cfg["ocpp"]["meter_interval_s"] == 1, cfg
    assert cfg["ocpp"]["url"].startswith("ws://127.0.0.1:"), cfg
