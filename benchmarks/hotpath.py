"""Micro-benchmark of the gateway's per-message work, before and after the hot-path changes
of docs/performance.md: each line times the straightforward code (what the gateway did
before, kept here as the reference) and what it does now, on the frames a PicoCharge
station sends. Best of 5 repeats, microseconds per call.

    python benchmarks/hotpath.py
"""
import json
import sqlite3
import tempfile
import time
import timeit
from datetime import datetime, timezone
from pathlib import Path

from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.routing import create_route_map
from ocpp.v16 import call_result

from picocharge import bench_load
from picocharge.firmware import ocppj
from picocharge.gateway import csms, validate
from picocharge.gateway.store import _INSERT_READING, _READING_COLS, Store


def _norm_ts_before(ts):
    if isinstance(ts, str):
        try:
            d = datetime.fromisoformat(ts.replace("Z", "+00:00"))
            if d.tzinfo is None:
                d = d.replace(tzinfo=timezone.utc)
            return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            pass
    return csms.utc_now()


def _utc_now_before():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _best(fn, number):
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


class _Conn:
    pass


def main():
    mv = ocppj.meter_value(time.time(), {"energy_wh": 1234, "current_a": 16.2, "voltage_v": 230.1,
                                         "power_w": 3700.2, "temp_c": 25.1}, bench_load.MEASURANDS,
                           "Sample.Periodic")
    payload = ocppj.meter_values(1, 7, [mv])
    with open(Path(validate._SCHEMAS) / "MeterValues.json", encoding="utf-8-sig") as f:
        schema = json.load(f)
    generic, compiled = validate._compile_generic(schema), validate.compile_schema(schema)
    ts = mv["timestamp"]
    hb = call_result.Heartbeat(current_time="2026-11-25T09:41:07Z")
    sess = csms.StationSession("A", _Conn(), gw=None)

    frame = json.dumps([2, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "MeterValues", payload])
    uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    lines = [
        # issue 17: orjson, json deciding where the two could differ (gateway/csms.py)
        ("MeterValues frame read", lambda: json.loads(frame), lambda: csms._fast_call(frame), 20000),
        ("CALLRESULT frame written", lambda: json.dumps([3, uid, {}], separators=(",", ":")),
         lambda: csms._dumps_result(uid, {}), 20000),
        ("MeterValues schema check", lambda: generic(payload), lambda: compiled(payload), 20000),
        ("handler kwargs (snake_case)", lambda: validate.snake(payload), lambda: validate.snake_top(payload), 20000),
        ("timestamp normalised", lambda: _norm_ts_before(ts), lambda: csms._norm_ts(ts), 20000),
        ("current time for answers", _utc_now_before, csms.utc_now, 20000),
        ("Heartbeat CALLRESULT payload", lambda: snake_to_camel_case(remove_nones(serialize_as_dict(hb))),
         lambda: validate.result_payload(hb), 20000),
        ("route map of a new session", lambda: create_route_map(sess),
         lambda: csms.StationSession("B", _Conn(), gw=None), 2000),
    ]
    print("%-34s %10s %10s" % ("per call (us)", "before", "after"))
    for name, before, after, n in lines:
        print("%-34s %10.1f %10.1f" % (name, _best(before, n), _best(after, n)))

    # 1,000 readings of 1,000 stations in one transaction: execute per row vs one executemany
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "gw.db")
        db = store.open()
        row = csms.meter_values_to_rows(payload["meterValue"], "Charging")[0]
        items = [(None, ("BENCH-%05d" % i, [row], "ocpp"), None) for i in range(1000)]

        def before():
            db.execute("BEGIN")
            for _fn, (station, rs, source), _f in items:
                for r in rs:
                    db.execute(_INSERT_READING, (station, r["ts"]) + tuple(r.get(k) for k in _READING_COLS)
                               + (source,)).lastrowid
            db.execute("COMMIT")

        def after():
            db.execute("BEGIN")
            Store._insert_run(db, items)
            db.execute("COMMIT")
        t0, t1 = _best(before, 3) / 1000, _best(after, 3) / 1000
        print("%-34s %10.1f %10.1f" % ("store one reading (batch of 1,000)", t0, t1))
        db.close()
    print("sqlite %s, python %s" % (sqlite3.sqlite_version, ".".join(map(str, __import__("sys").version_info[:3]))))


if __name__ == "__main__":
    main()
