"""The schema check's fast "yes" (validate.accepts: jsonschema-rs, compiled) is never laxer than
our checkers (validate.request), which give every refusal: for every request a station sends,
a payload it accepts is one ours accepts, as csms._handle asks it (a text frame orjson read, no
\\u0000 escape in it). Payloads: valid ones built from each schema, then broken at one place."""
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.exceptions import OCPPError

from picocharge.gateway import csms, validate

STATION_SENDS = ["Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
                 "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction",
                 "StatusNotification", "StopTransaction", "SecurityEventNotification",
                 "SignedFirmwareStatusNotification", "LogStatusNotification"]
SCHEMAS = {}
for _a in STATION_SENDS:
    with open(os.path.join(validate._SCHEMAS, _a + ".json"), encoding="utf-8-sig") as _f:
        SCHEMAS[_a] = json.load(_f)

# values a broken payload may carry at one place: near misses of the types the schemas ask for
odd = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2 ** 63, max_value=2 ** 80),
    st.sampled_from([1.0, 0.5, -0.0, 1e20, 1e300, 0.1 + 0.2]), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30), st.sampled_from(["", "x" * 21, "x" * 51, "x" * 256, "a\x00b", "\U0001F600" * 26,
                                           "2026-12-01T12:00:00Z", "Charging", "Energy.Active.Import.Register"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _valid(draw, s):
    """A value `s` accepts (the 1.6 schemas' subset: type, properties, required, enum,
    maxLength, items, minItems)."""
    if "enum" in s:
        return draw(st.sampled_from(s["enum"]))
    t = s.get("type")
    if t == "object":
        props = s.get("properties", {})
        req = set(s.get("required", ()))
        out = {}
        for k, sub in props.items():
            if k in req or draw(st.booleans()):
                out[k] = _valid(draw, sub)
        return out
    if t == "array":
        n = draw(st.integers(s.get("minItems", 0), s.get("minItems", 0) + 2))
        return [_valid(draw, s.get("items", {})) for _ in range(n)]
    if t == "string":
        if s.get("format") == "date-time":
            return draw(st.sampled_from(["2026-12-01T12:00:00Z", "2026-12-01T12:00:00.123+01:00"]))
        return draw(st.text(max_size=min(s.get("maxLength", 20), 20)))
    if t == "integer":
        return draw(st.integers(-10, 10 ** 6))
    if t == "number":
        return draw(st.one_of(st.integers(-10, 10 ** 6), st.floats(-1e6, 1e6)))
    if t == "boolean":
        return draw(st.booleans())
    return draw(odd)


def _paths(v, here=()):
    yield here
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, here + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, here + (i,))


@st.composite
def payloads(draw):
    action = draw(st.sampled_from(STATION_SENDS))
    p = _valid(draw, SCHEMAS[action])
    how = draw(st.sampled_from(["as is", "replace", "delete", "add"]))
    paths = [q for q in _paths(p) if q]
    if how != "as is" and paths:
        q = draw(st.sampled_from(paths))
        parent = p
        for k in q[:-1]:
            parent = parent[k]
        if how == "replace":
            parent[q[-1]] = draw(odd)
        elif how == "delete":
            del parent[q[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(odd)
    elif how == "add":
        p[draw(st.text(max_size=8))] = draw(odd)
    return action, p, draw(st.booleans())


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_validate_fast__its_yes_is_ours_for_every_request_a_station_sends(case):
    action, payload, ascii_only = case
    # the station's text (json writes what orjson would not: integers past 64 bits), read as
    # the gateway reads it; a frame orjson does not take never gets the fast yes
    raw = json.dumps([2, "id-1", action, payload], ensure_ascii=ascii_only)
    call = csms._fast_call(raw)
    if call is None:
        return
    payload = call[2]
    if "\\u0000" in raw or not validate.accepts(action, payload):
        return      # csms._handle asks ours alone
    try:
        validate.request(action, payload)
    except OCPPError as e:
        raise AssertionError("jsonschema-rs accepted what ours refuses: %s %r: %s" % (action, payload, e))


def test_validate_fast__says_yes_to_a_station_s_meter_values_and_no_to_a_broken_one():
    ok = {"connectorId": 1, "meterValue": [{"timestamp": "2026-12-01T12:00:00Z",
                                             "sampledValue": [{"value": "1234", "measurand": "Energy.Active.Import.Register"}]}]}
    assert validate.accepts("MeterValues", ok) is True
    for bad in ({**ok, "connectorId": 1.0}, {**ok, "connectorId": True}, {"meterValue": ok["meterValue"]},
                {**ok, "extra": 1}, {**ok, "meterValue": [{"timestamp": "t", "sampledValue": [{"value": 5}]}]}):
        assert validate.accepts("MeterValues", bad) is False, bad
    assert validate.accepts("NoSuchAction", ok) is False
