"""The one reading vocabulary (firmware/fields.py) at the gateway: what a station sends under
each measurand of the table is stored and served under that row's key, the storage columns are
the table's, one station-id rule answers the same text at the API, the CLI and the OCPP
WebSocket, and no reading key is spelled outside fields.py."""
import io
import re
import sqlite3
import subprocess
import sys
import tokenize
from pathlib import Path
from urllib.parse import quote

import pytest
import websockets
from hypothesis import given, settings, strategies as st
from ocpp.v16 import call

from picocharge.firmware import fields, ocppj
from picocharge.gateway import csms, models, readings
from picocharge.gateway.store import Store
from support.gwhttp import http
from support.stations import Connected, boot

F = fields
ROOT = Path(__file__).resolve().parents[2]


def _sampled(i, r, location):
    sv = {"value": "%g" % (10.0 + i), "context": "Sample.Periodic", "measurand": r[F.MEASURAND],
          "unit": r[F.OCPP_UNIT]}
    if location:
        sv["location"] = location
    if r[F.PHASE]:
        sv["phase"] = r[F.PHASE]
    return sv


async def test_vocabulary__each_measurand_of_the_table_is_stored_and_served_under_its_key(gateway):
    gw = await gateway(auth="none")
    rows = [(i, r) for i, r in enumerate(F.READINGS) if r[F.MEASURAND]]
    climate = [(i, F.READINGS[i]) for i in ocppj.CLIMATE_ROWS]
    assert rows and climate
    async with Connected(gw.port, "CP-1") as cp:
        assert (await boot(cp)).status == "Accepted"
        # each row as the table places it; a row taking its measurand at any location, at Inlet
        await cp.call(call.MeterValues(connector_id=1, meter_value=[{
            "timestamp": "2026-01-01T10:00:00Z",
            "sampled_value": [_sampled(i, r, r[F.LOCATION] or "Inlet") for i, r in rows]}]))
        # the same without a location for it: still that row
        loose = [(i, r) for i, r in rows if r[F.LOCATION] is None]
        await cp.call(call.MeterValues(connector_id=1, meter_value=[{
            "timestamp": "2026-01-01T10:00:10Z", "sampled_value": [_sampled(i, r, None) for i, r in loose]}]))
        data = "{%s}" % ",".join('"%s":%g' % (r[F.CLIMATE], 20.0 + i) for i, r in climate)
        dt = await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Climate", data=data))
        assert dt.status == "Accepted", dt
    s, got = await http(gw, "GET", "/api/stations/CP-1/readings")
    assert s == 200, got
    by_ts = {r["ts"]: r for r in got}
    want = {r[F.KEY]: 10.0 + i for i, r in rows}
    first = by_ts["2026-01-01T10:00:00Z"]
    assert {k: first.get(k) for k in want} == want, first
    second = by_ts["2026-01-01T10:00:10Z"]
    assert {k: v for k, v in second.items() if k in F.READING_KEYS} == {
        r[F.KEY]: 10.0 + i for i, r in loose}, second
    clim = [r for r in got if not r["ts"].startswith("2026-01-01")]
    assert len(clim) == 1 and {k: v for k, v in clim[0].items() if k in F.READING_KEYS} == {
        r[F.KEY]: 20.0 + i for i, r in climate}, clim
    s, sts = await http(gw, "GET", "/api/stations")
    last = sts[0]["last_reading"]
    assert set(F.READING_KEYS) <= set(last), last


async def test_vocabulary__the_firmware_s_own_frames_come_back_as_the_reading_they_were_made_of(gateway):
    """ocppj.meter_value / ocppj.climate_of (what the board sends) through a real ocpp client:
    the gateway stores exactly the reading the board had, key for key."""
    gw = await gateway(auth="none")
    values = [1.5 + i for i in range(len(F.READINGS))]
    reading = dict(zip(F.READING_KEYS, values))
    mv = ocppj.meter_value("2026-01-01T11:00:00Z", reading, ocppj.split_csl(ocppj.DEFAULT_MEASURANDS),
                           "Sample.Periodic")
    async with Connected(gw.port, "CP-FW") as cp:
        assert (await boot(cp)).status == "Accepted"
        await cp.call(call.MeterValues(connector_id=1, meter_value=[
            {"timestamp": mv["timestamp"], "sampled_value": mv["sampledValue"]}]))
        dt = await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Climate",
                                             data=ocppj.climate_of(values)))
        assert dt.status == "Accepted", dt
    s, got = await http(gw, "GET", "/api/stations/CP-FW/readings")
    assert s == 200 and len(got) == 2, got
    merged = {}
    for r in got:
        merged.update({k: v for k, v in r.items() if k in F.READING_KEYS})
    assert merged == reading, merged


# --- the station id ----------------------------------------------------------------------

BAD_IDS = ["CP:1", "A" * 49, "CP 1", "caf\u00e9", "CP/1", "_CP", ".CP"]
GOOD_ID = "X" * 47 + "9"     # 48: the longest the rule takes


def _gateway_cli(db, *args):
    return subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway"] + list(args) + ["--db", db],
                          capture_output=True, text=True, timeout=60)


async def test_vocabulary__a_refused_station_id_gets_the_same_text_at_the_api_cli_and_websocket(gateway, tmp_path):
    gw = await gateway(auth="none")
    rule = F.STATION_ID_RULE
    db = str(tmp_path / "cli.db")
    for sid in BAD_IDS:
        assert F.station_id_error(sid) == rule, sid
        s, out = await http(gw, "POST", "/api/stations", {"id": sid})
        assert (s, out) == (400, {"error": rule}), (sid, s, out)
        r = _gateway_cli(db, "add-station", sid)
        assert r.returncode == 2 and rule in " ".join(r.stderr.split()), (sid, r.stderr)
        with pytest.raises(websockets.InvalidStatus) as e:
            await websockets.connect("ws://127.0.0.1:%d/ocpp/%s" % (gw.port, quote(sid, safe="/")),
                                     subprotocols=["ocpp1.6"], open_timeout=10)
        resp = e.value.response
        assert (resp.status_code, resp.body.decode()) == (404, rule + "\n"), (sid, resp.status_code, resp.body)
    # the longest good id passes all three doors
    s, out = await http(gw, "POST", "/api/stations", {"id": GOOD_ID, "password": "correct-horse-battery-1"})
    assert s == 201 and out["id"] == GOOD_ID, out
    r = _gateway_cli(db, "add-station", GOOD_ID)
    assert r.returncode == 0 and "password: " in r.stdout, r
    async with Connected(gw.port, GOOD_ID) as cp:
        assert (await boot(cp)).status == "Accepted"


_RULE_RE = re.compile(models.STATION_ID_PATTERN)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60),
                 st.text(alphabet="AZaz09-_.:/ ~%", min_size=0, max_size=50),
                 st.sampled_from([".", "..", "-", "_a", "-a", ".a", "a.", "a-"])))
def test_vocabulary__station_id_pattern_of_the_api_document_is_the_rule(sid):
    """models.NewStation (and so /api/openapi.json) carries the rule as a pattern: both agree."""
    assert (F.station_id_error(sid) is None) == bool(_RULE_RE.match(sid) and not sid.endswith("\n")), sid
    assert models.NewStation.model_fields["id"].metadata[0].pattern == models.STATION_ID_PATTERN


# --- the table at the gateway ------------------------------------------------------------

def test_vocabulary__a_sampled_value_goes_to_the_row_of_its_measurand_and_location():
    for r in F.READINGS:
        if r[F.MEASURAND]:
            assert csms.reading_row(r[F.MEASURAND], r[F.LOCATION]) is r, r
    assert csms.reading_row("SoC") is None and csms.reading_row("Frequency", "Outlet") is None
    # Temperature: Body is the enclosure, any other place (or none) the board
    assert csms.reading_row("Temperature", "Body") is F.READINGS[F.TEMP]
    for loc in (None, "Outlet", "Inlet", "Cable", "EV"):
        assert csms.reading_row("Temperature", loc) is F.READINGS[F.CHIP_TEMP], loc
    # a measurand with one row: whatever the location
    assert csms.reading_row("Current.Import", "Inlet") is F.READINGS[F.CURRENT]
    assert csms.reading_row("Energy.Active.Import.Register", None) is F.READINGS[F.ENERGY]


def test_vocabulary__ranges_model_and_columns_are_the_table_s():
    assert readings.RANGES == {r[F.KEY]: (r[F.LO], r[F.HI]) for r in F.READINGS}
    assert readings.THINGSPEAK_FIELDS == tuple((r[F.FIELD], r[F.KEY], r[F.LABEL], r[F.UNIT]) for r in F.READINGS) + (
        (8, "status_code", "Status code", ""),)
    assert list(models.ReadingValues.model_fields) == list(F.READING_KEYS) + ["status"]
    for r in F.READINGS:
        assert r[F.LABEL] in models.ReadingValues.model_fields[r[F.KEY]].description


# the readings table as a gateway before the vocabulary made it (issue 11): spelled out here, so
# that this test notices if the table's column list drifts from what databases hold
_OLD_READINGS = """CREATE TABLE readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    ts TEXT NOT NULL,
    temp_c REAL, humidity REAL, current_a REAL, voltage_v REAL, power_w REAL,
    energy_wh REAL, chip_temp_c REAL,
    status TEXT,
    source TEXT NOT NULL
)"""


def _columns(path):
    with sqlite3.connect(path) as db:
        return [(r[1], r[2]) for r in db.execute("PRAGMA table_info(readings)")]


def test_vocabulary__storage_columns_are_the_table_s_and_older_databases_open_as_they_are(tmp_path):
    new = str(tmp_path / "new.db")
    Store(new).open().close()
    cols = [("id", "INTEGER"), ("station", "TEXT"), ("ts", "TEXT")] + [(k, "REAL") for k in F.READING_KEYS] + [
        ("status", "TEXT"), ("source", "TEXT")]
    assert _columns(new) == cols
    old = str(tmp_path / "old.db")
    with sqlite3.connect(old) as db:
        db.execute(_OLD_READINGS)
        db.execute("INSERT INTO readings (station, ts, temp_c, chip_temp_c, source) VALUES "
                   "('CP-1', '2026-01-01T00:00:00Z', 21.5, 30.0, 'ocpp')")
    assert _columns(old) == cols
    Store(old).open().close()
    assert _columns(old) == cols        # nothing to migrate: the same columns, the same order
    # a database that lacks a reading's column (as one will when the table grows) gets it
    older = str(tmp_path / "older.db")
    with sqlite3.connect(older) as db:
        db.execute(_OLD_READINGS.replace(", chip_temp_c REAL", ""))
        db.execute("INSERT INTO readings (station, ts, temp_c, source) VALUES "
                   "('CP-1', '2026-01-01T00:00:00Z', 21.5, 'ocpp')")
    Store(older).open().close()
    assert sorted(_columns(older)) == sorted(cols)
    with sqlite3.connect(older) as db:
        assert db.execute("SELECT temp_c, chip_temp_c FROM readings").fetchall() == [(21.5, None)]


# --- nobody else spells a reading key ---------------------------------------------------

# files that may still spell a reading key, and why
ALLOWED = {
    # the board's status page: its owner moves its table to fields.describe()
    "firmware/web.py": "the status page's own table, to come from fields.describe()",
}


_KEYS = "|".join(F.READING_KEYS)
# a string literal that is a key, or holds one in quotes (JSON in a string)
_QUOTED = re.compile(r"""^[rbuRBU]*(["']{1,3})(%s)\1$|["'](%s)["']""" % (_KEYS, _KEYS))
# the keys no English word spells (temp_c, not humidity), as a word anywhere in a string (SQL, docs)
_COINED = re.compile(r"\b(%s)\b" % "|".join(k for k in F.READING_KEYS if "_" in k))


def _spellings(path):
    """(line, token) of every Python name equal to a reading key, and every string literal that
    spells one (see _QUOTED, _COINED); comments do not count."""
    out = []
    src = path.read_text(encoding="utf-8")
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if (tok.type == tokenize.NAME and tok.string in F.READING_KEYS) or (
                tok.type == tokenize.STRING and (_QUOTED.search(tok.string) or _COINED.search(tok.string))):
            out.append((tok.start[0], tok.string[:60]))
    return out


def _spelled(text, tmp_path):
    p = tmp_path / "m.py"
    p.write_text(text)
    return _spellings(p)


def test_vocabulary__the_spelling_check_sees_each_form(tmp_path):
    for text in ('x = "humidity"\n', "x = {'humidity': 1}\n", 'x = "SELECT chip_temp_c FROM r"\n',
                 "st.energy_wh = 1\n", "x = '{\"humidity\":1}'\n", 'x = """temp_c"""\n'):
        assert _spelled(text, tmp_path), text
    for text in ('x = "the humidity sensor"\n', "# temp_c in a comment\n", 'x = "temp_cx"\n'):
        assert not _spelled(text, tmp_path), text


def test_vocabulary__no_reading_key_is_spelled_outside_fields_py():
    found = {}
    for top in ("firmware", "gateway", "tools"):
        for p in sorted((ROOT / top).rglob("*.py")):
            rel = p.relative_to(ROOT).as_posix()
            if rel == "firmware/fields.py" or rel in ALLOWED:
                continue
            hits = _spellings(p)
            if hits:
                found[rel] = hits
    assert found == {}, "reading keys spelled outside firmware/fields.py (derive them from its table): %r" % found
    # and the check sees one when there is one
    assert _spellings(ROOT / "firmware" / "fields.py")
