"""The gateway's hot-path shortcuts (made for `picocharge bench`, see docs/performance.md)
give exactly what the straightforward code gives: compiled schema checks against the
reference checker and jsonschema's Draft4Validator, timestamps, CALLRESULT payloads, the
batched reading inserts of the store, and handlers found once per session class."""
import asyncio
import glob
import json
import os
import random
from datetime import datetime, timezone

import pytest
from jsonschema import Draft4Validator
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.v16 import call_result
from ocpp.v16.enums import RegistrationStatus

from support.stations import has_nul
from picocharge.gateway import csms, validate
from picocharge.gateway.store import Store

_JUNK = [None, 1, 1.5, True, "s", [], {}, [1], {"a": 1}]


def _sample(s, rng):
    t = s.get("type")
    if "enum" in s and rng.random() < 0.8:
        return rng.choice(s["enum"])
    if t == "string":
        return "x" * rng.choice([0, 3, 20, 21, 25, 26, 50, 51, 256, 501])
    if t == "integer":
        return rng.choice([0, 1, -3, 7])
    if t == "number":
        return rng.choice([0, 1.5, 0.1, 3])
    if t == "boolean":
        return rng.choice([True, False])
    if t == "object":
        req = s.get("required") or []
        return {k: _sample(v, rng) for k, v in (s.get("properties") or {}).items()
                if k in req or rng.random() < 0.5}
    if t == "array":
        return [_sample(s["items"], rng) for _ in range(rng.choice([0, 1, 2]))]
    return None


def _mutate(v, rng):
    if rng.random() < 0.15:
        return rng.choice(_JUNK)
    if isinstance(v, dict):
        v = dict(v)
        for k in list(v):
            r = rng.random()
            if r < 0.1:
                del v[k]
            elif r < 0.3:
                v[k] = _mutate(v[k], rng)
        if rng.random() < 0.1:
            v["extraKey"] = 1
        return v
    if isinstance(v, list):
        return [_mutate(x, rng) for x in v]
    return v


def _verdict(check, v):
    try:
        check(v)
        return None
    except validate._Fail as e:
        return (e.kind, e.message)


def test_validate__compiled_checks_match_the_reference_and_draft4_on_every_16_schema():
    rng = random.Random(3)
    n = 0
    for path in sorted(glob.glob(os.path.join(validate._SCHEMAS, "*.json"))):
        with open(path, encoding="utf-8-sig") as f:
            schema = json.load(f)
        if not validate._uses_only_supported(schema):
            continue
        fast, ref, dv = validate.compile_schema(schema), validate._compile_generic(schema), Draft4Validator(schema)
        for i in range(200):
            v = _sample(schema, rng)
            if i % 2:
                v = _mutate(v, rng)
            got, want = _verdict(fast, v), _verdict(ref, v)
            assert got == want, (os.path.basename(path), v, got, want)
            assert (got is None) == (dv.is_valid(v) and not has_nul(v)), (os.path.basename(path), v, got)
            n += 1
    assert n > 10000, n


def _norm_ts_reference(ts):
    if isinstance(ts, str):
        try:
            d = datetime.fromisoformat(ts.replace("Z", "+00:00"))
            if d.tzinfo is None:
                d = d.replace(tzinfo=timezone.utc)
            return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            pass
    return "NOW"


@pytest.mark.parametrize("ts", [
    "2026-11-25T09:41:07Z", "2026-11-25T09:41:07.123Z", "2026-11-25T09:41:07.1234567Z",
    "2026-11-25T09:41:07.1234567891Z", "2026-02-30T09:41:07.123Z", "2026-11-25T24:00:00Z",
    "2026-11-25T09:41:60Z", "2026-13-25T09:41:07.5Z", "2026-11-25T09:41:07.Z", "2026-11-25T09:41:07.123z",
    "2026-11-25T09:41:07+02:00", "2026-11-25T09:41:07", "2026-11-25 09:41:07Z", "x", "", None, 5])
def test_norm_ts__cached_fast_path_equals_fromisoformat(ts, monkeypatch):
    monkeypatch.setattr(csms, "utc_now", lambda: "NOW")
    want = _norm_ts_reference(ts)
    assert csms._norm_ts(ts) == want, ts
    assert csms._norm_ts(ts) == want, ts    # second time from the cache


@pytest.mark.parametrize("result", [
    call_result.MeterValues(), call_result.Heartbeat(current_time="2026-11-25T09:41:07Z"),
    call_result.BootNotification(current_time="2026-11-25T09:41:07Z", interval=300,
                                 status=RegistrationStatus.accepted),
    call_result.StartTransaction(transaction_id=3, id_tag_info={"status": "Accepted", "parent_id_tag": None}),
    call_result.StopTransaction(), call_result.Authorize(id_tag_info={"status": "Accepted"}),
    call_result.DataTransfer(status="Accepted", data="x"), call_result.StatusNotification()],
    ids=lambda r: type(r).__name__)
def test_result_payload__equals_ocpps_serialisation(result):
    want = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
    got = validate.result_payload(result)
    assert json.dumps(got) == json.dumps(want), (got, want)


async def test_store__readings_of_many_callers_in_one_batch_get_their_own_ids_and_errors(tmp_path):
    store = Store(tmp_path / "gw.db")
    await store.start()
    try:
        row = {"ts": "2026-11-25T09:41:07Z", "current_a": 1.0, "status": "Charging"}
        bad = {"ts": None, "current_a": 2.0}     # readings.ts is NOT NULL
        futs = [store.add_readings("A", [row, row], "ocpp"), store.add_readings("B", [row], "ocpp"),
                store.add_readings("C", [bad], "ocpp"), store.add_readings("D", [row] * 3, "ocpp")]
        res = await asyncio.gather(*futs, return_exceptions=True)
        assert res[0] == [1, 2] and res[1] == [3] and res[3] == [4, 5, 6], res
        assert isinstance(res[2], Exception), res
        rows = await store.run(lambda db: [tuple(r) for r in db.execute(
            "SELECT id, station, current_a, status FROM readings ORDER BY id")])
        assert rows == [(1, "A", 1.0, "Charging"), (2, "A", 1.0, "Charging"), (3, "B", 1.0, "Charging"),
                        (4, "D", 1.0, "Charging"), (5, "D", 1.0, "Charging"), (6, "D", 1.0, "Charging")], rows
    finally:
        await store.stop()


class _Conn:
    pass


def test_session__handlers_found_once_per_class_and_bound_to_each_session():
    a = csms.StationSession("A", _Conn(), gw=None)
    b = csms.StationSession("B", _Conn(), gw=None)
    assert a.route_map["Heartbeat"]["_on_action"].__self__ is a
    assert b.route_map["Heartbeat"]["_on_action"].__self__ is b
    assert set(b.route_map) == set(a.route_map) and "MeterValues" in a.route_map, sorted(a.route_map)
    assert b._connection is not a._connection and b.id == "B"


def test_store__insert_run_one_executemany_and_a_bad_row_fails_only_its_caller(tmp_path):
    db = Store(tmp_path / "gw.db").open()
    row = {"ts": "2026-11-25T09:41:07Z", "voltage_v": 230.0}
    items = [(None, ("A", [row], "ocpp"), "fa"), (None, ("B", [row, row], "ocpp"), "fb")]
    db.execute("BEGIN")
    assert Store._insert_run(db, items) == [("fa", True, [1]), ("fb", True, [2, 3])]
    out = Store._insert_run(db, items[:1] + [(None, ("C", [{"ts": None}], "ocpp"), "fc")] + items[1:])
    db.execute("COMMIT")
    assert [(f, ok, r if ok else type(r).__name__) for f, ok, r in out] == [
        ("fa", True, [4]), ("fc", False, "IntegrityError"), ("fb", True, [5, 6])], out
    got = [tuple(r) for r in db.execute("SELECT id, station FROM readings ORDER BY id")]
    assert got == [(1, "A"), (2, "B"), (3, "B"), (4, "A"), (5, "B"), (6, "B")], got


def test_store__insert_run_in_chunks_keeps_each_callers_ids_and_a_bad_row_in_a_later_chunk_undoes_the_run(tmp_path):
    from picocharge.gateway.store_sqlite import RUN_CHUNK
    db = Store(tmp_path / "gw.db").open()
    row = {"ts": "2026-11-25T09:41:07Z", "voltage_v": 230.0}
    # 1 + 2 + 3 + 4 + 1 + ... rows: a run of 133 (chunks of 64, 64, 4 and 1), every value kept
    items = [(None, ("S%03d" % i, [dict(row, current_a=float(i), energy_wh=float(j)) for j in range(i % 4 + 1)],
                     "ocpp"), "f%d" % i) for i in range(54)]
    n = sum(len(it[1][1]) for it in items)
    assert n == 133 and RUN_CHUNK == 64, n
    db.execute("BEGIN")
    out = Store._insert_run(db, items)
    db.execute("COMMIT")
    assert all(ok for _f, ok, _r in out) and [f for f, _ok, _r in out] == [it[2] for it in items]
    assert [i for _f, _ok, ids in out for i in ids] == list(range(1, n + 1))
    got = {r["id"]: (r["station"], r["current_a"], r["energy_wh"], r["voltage_v"], r["source"])
           for r in db.execute("SELECT * FROM readings")}
    for (_f, _ok, ids), (_n, (station, rows, _s), _f2) in zip(out, items):
        assert [got[i] for i in ids] == [(station, r["current_a"], r["energy_wh"], 230.0, "ocpp") for r in rows]
    # a bad row past the first chunk: the chunks before it are undone, then each caller on its own
    bad = (None, ("BAD", [{"ts": None}], "ocpp"), "fbad")
    run = items[:40] + [bad] + items[40:]
    assert sum(len(it[1][1]) for it in items[:40]) > RUN_CHUNK
    db.execute("BEGIN")
    out = Store._insert_run(db, run)
    db.execute("COMMIT")
    assert [(f, ok) for f, ok, _r in out] == [(it[2], it[2] != "fbad") for it in run]
    assert type(out[40][2]).__name__ == "IntegrityError"
    ids = [i for _f, ok, r in out if ok for i in r]
    assert ids == sorted(ids) and len(ids) == n
    count, stations = db.execute("SELECT COUNT(*), COUNT(DISTINCT station) FROM readings WHERE id > ?",
                                 (n,)).fetchone()
    assert (count, stations) == (n, 54), (count, stations)
    assert [tuple(r) for r in db.execute("SELECT station FROM readings WHERE id IN (%s) ORDER BY id" % ",".join(
        map(str, out[0][2] + out[-1][2])))] == [("S000",)] * len(out[0][2]) + [("S053",)] * len(out[-1][2])
