# Checks of the reading vocabulary (firmware/fields.py) and of what the firmware derives from
# it, written once and run under both interpreters: test_fields_both.py imports this file under
# CPython (one test per check) and runs it as a script under the unix-port micropython, where it
# prints "ok <name>" per check. MicroPython-compatible code only (no pytest, no re).
try:
    from support import checkrun   # CPython: tests/ is on sys.path
except ImportError:
    import checkrun                # micropython runs this file from tests/support

try:
    import ujson as json
except ImportError:
    import json

import config
import fields
import ocppj
import state

F = fields

# OCPP 1.6 (schemas of MeterValues): the enums a sampledValue's members come from
MEASURANDS_16 = ("Energy.Active.Export.Register", "Energy.Active.Import.Register",
                 "Energy.Reactive.Export.Register", "Energy.Reactive.Import.Register",
                 "Energy.Active.Export.Interval", "Energy.Active.Import.Interval",
                 "Energy.Reactive.Export.Interval", "Energy.Reactive.Import.Interval", "Power.Active.Export",
                 "Power.Active.Import", "Power.Offered", "Power.Reactive.Export", "Power.Reactive.Import",
                 "Power.Factor", "Current.Import", "Current.Export", "Current.Offered", "Voltage", "Frequency",
                 "Temperature", "SoC", "RPM")
LOCATIONS_16 = ("Cable", "EV", "Inlet", "Outlet", "Body")
PHASES_16 = ("L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1")
UNITS_16 = ("Wh", "kWh", "varh", "kvarh", "W", "kW", "VA", "kVA", "var", "kvar", "A", "V", "K", "Celsius",
            "Fahrenheit", "Percent")

GOOD_IDS = ("CP-1", "CP-80", "FLEET-01", "BENCH-00001", "OLD-1", "SIM-1", "a", "x.y_z-0", "A" * 48)
BAD_IDS = ("", "A" * 49, "CP 1", "CP:1", "CP/1", "CP%201", "CP-1\n", "caf\u00e9", "CP#1", "CP?1", "CP~1",
           ".", "..", "-", "-x", "_x", ".hidden", None, 12)


def _is_key(k):
    if not k or not ("a" <= k[0] <= "z"):
        return False
    for c in k:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "_"):
            return False
    return True


def check_table__rows_are_complete_and_keys_unique():
    seen = []
    for r in F.READINGS:
        assert type(r) is tuple and len(r) == 11, r
        k = r[F.KEY]
        assert _is_key(k) and k not in seen, k
        seen.append(k)
        assert r[F.UNIT] and r[F.LABEL], r
        assert type(r[F.LO]) is int and type(r[F.HI]) is int and r[F.LO] < r[F.HI], r
    assert F.READING_KEYS == tuple(seen), F.READING_KEYS


def check_table__row_constants_name_every_row_once():
    idx = (F.TEMP, F.HUMIDITY, F.CURRENT, F.VOLTAGE, F.POWER, F.ENERGY, F.CHIP_TEMP)
    assert sorted(idx) == list(range(len(F.READINGS))), idx


def check_table__ocpp_columns_use_ocpp16_enums():
    pairs = []
    anywhere = []
    for r in F.READINGS:
        m = r[F.MEASURAND]
        if m is None:
            # no measurand in OCPP 1.6: it must go in DataTransfer Climate, and has no OCPP placement
            assert r[F.CLIMATE] and r[F.LOCATION] is None and r[F.PHASE] is None and r[F.OCPP_UNIT] is None, r
            continue
        assert m in MEASURANDS_16, m
        assert r[F.LOCATION] is None or r[F.LOCATION] in LOCATIONS_16, r
        assert r[F.PHASE] is None or r[F.PHASE] in PHASES_16, r
        assert r[F.OCPP_UNIT] in UNITS_16, r
        assert (m, r[F.LOCATION], r[F.PHASE]) not in pairs, r
        pairs.append((m, r[F.LOCATION], r[F.PHASE]))
        if r[F.LOCATION] is None:
            assert m not in anywhere, "two rows take %s at any location" % m
            anywhere.append(m)


def check_table__thingspeak_fields_are_1_to_8_once():
    ns = [r[F.FIELD] for r in F.READINGS] + [F.STATUS_FIELD]
    assert sorted(ns) == list(range(1, 9)), ns
    got = F.thingspeak_fields(dict([(r[F.KEY], 1.0) for r in F.READINGS] + [("status", "Charging")]))
    assert [name for name, _v in got] == ["field%d" % r[F.FIELD] for r in F.READINGS] + ["field8"], got
    assert got[-1] == ("field8", 2), got


def check_table__climate_members_are_unique_and_distinct_from_keys():
    names = [r[F.CLIMATE] for r in F.READINGS if r[F.CLIMATE]]
    assert len(names) == len(set(names)) and len(names) == len(ocppj.CLIMATE_ROWS), names


def check_describe__is_json_of_key_label_unit_in_table_order():
    d = json.loads(json.dumps(F.describe()))
    assert [x["key"] for x in d] == list(F.READING_KEYS), d
    for x, r in zip(d, F.READINGS):
        assert x == {"key": r[F.KEY], "label": r[F.LABEL], "unit": r[F.UNIT]}, x


def _sent():
    """measurand -> row: the table's rows with a measurand and a location, first of each wins."""
    want = {}
    for r in F.READINGS:
        if r[F.MEASURAND] and r[F.LOCATION] and r[F.MEASURAND] not in want:
            want[r[F.MEASURAND]] = r
    return want


def check_ocppj__measurands_sent_are_the_table_rows_with_a_location():
    want = _sent()
    for m in MEASURANDS_16:
        assert ocppj.measurand_row(m) is want.get(m), m
    assert sorted(ocppj.split_csl(ocppj.DEFAULT_MEASURANDS)) == sorted(want), ocppj.DEFAULT_MEASURANDS
    assert ocppj.check_measurands(ocppj.DEFAULT_MEASURANDS) == ocppj.split_csl(ocppj.DEFAULT_MEASURANDS)
    for m in ocppj.split_csl(ocppj.DEFAULT_ALIGNED):
        assert m in want, m
    try:
        ocppj.check_measurands("Voltage,SoC")
    except ValueError as e:
        assert "'SoC'" in str(e), e
    else:
        raise AssertionError("SoC taken")


def check_ocppj__meter_value_sends_each_row_as_the_table_says():
    reading = dict([(r[F.KEY], 1.5 + i) for i, r in enumerate(F.READINGS)])
    mv = ocppj.meter_value(0, reading, ocppj.split_csl(ocppj.DEFAULT_MEASURANDS), "Sample.Periodic")
    assert len(mv["sampledValue"]) == len(_sent()), mv
    for sv in mv["sampledValue"]:
        r = ocppj.measurand_row(sv["measurand"])
        assert sv["unit"] == r[F.OCPP_UNIT] and sv["location"] == r[F.LOCATION], sv
        assert sv["value"] == ocppj.fmt(reading[r[F.KEY]]) and ("phase" in sv) == (r[F.PHASE] is not None), sv


def check_ocppj__climate_carries_the_climate_rows():
    vals = [None] * len(F.READINGS)
    assert ocppj.climate_of(vals) is None
    for n, i in enumerate(ocppj.CLIMATE_ROWS):
        vals[i] = 10.5 + n
    got = json.loads(ocppj.climate_of(vals))
    assert got == dict([(F.READINGS[i][F.CLIMATE], 10.5 + n) for n, i in enumerate(ocppj.CLIMATE_ROWS)]), got


def check_state__reading_has_every_key_and_rounds_the_register():
    st = state.State()
    r = st.reading()
    assert sorted(r) == sorted(list(F.READING_KEYS) + ["status", "fault"]), r
    assert r[F.READING_KEYS[F.ENERGY]] == 0.0 and r[F.READING_KEYS[F.TEMP]] is None, r
    st.values[F.ENERGY] = 12.3456789
    st.values[F.CURRENT] = 16.0
    r = st.reading()
    assert r[F.READING_KEYS[F.ENERGY]] == 12.346 and r[F.READING_KEYS[F.CURRENT]] == 16.0, r


def check_station_id__good_ids_pass_at_the_rule_and_the_board():
    for sid in GOOD_IDS:
        assert F.station_id_error(sid) is None, sid
        assert config.validate({"station_id": sid})["station_id"] == sid


def check_station_id__bad_ids_get_the_one_text_at_the_rule_and_the_board():
    for sid in BAD_IDS:
        assert F.station_id_error(sid) == F.STATION_ID_RULE, sid
        if isinstance(sid, str) and sid:
            try:
                config.validate({"station_id": sid})
            except config.ConfigError as e:
                assert e.key == "station_id" and e.problem == F.STATION_ID_RULE, (sid, e.problem)
            else:
                raise AssertionError("config took station id %r" % sid)
    assert str(F.STATION_ID_MAX) in F.STATION_ID_RULE


CHECKS = checkrun.checks(globals())

if __name__ == "__main__":
    checkrun.main(CHECKS)
