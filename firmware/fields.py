# The reading vocabulary: the one table of what a station reads (key, unit, label, how it goes
# in OCPP, its ThingSpeak field, its physical range) and the one station-id rule, with the
# payload shapes built from them (ThingSpeak fields, MQTT topics and JSON). Everything else
# derives from this file: the firmware's state and measurand map (state.py, sampler.py,
# ocppj.py, aligned.py), the gateway's sampled-value mapping and value checks (readings.py,
# csms.py, models.py), its database columns (store.py) and the web pages (describe()).
#
# Pure logic, imported on the board: tuples only, nothing built per call but the results.
try:
    import ujson as json
except ImportError:
    import json

# One row per reading; its index in READINGS is the reading's number (TEMP ... CHIP_TEMP below),
# which is also where the firmware keeps its latest value (state.State.values).
#   key       the name everywhere: reading dicts, MQTT and API JSON, database column
#   unit      of every value under that key, as ThingSpeak's channel shows it
#   label     for people (ThingSpeak field names, web pages)
#   measurand OCPP 1.6 MeterValues measurand; None: 1.6 has none (sent in DataTransfer Climate)
#   location  the sampledValue location the station sends; None (with a measurand): the
#             central system takes that measurand at any location no other row names (the
#             station does not send it as one)
#   phase     the sampledValue phase, None for none
#   ocpp_unit the sampledValue unit (UnitOfMeasure) the station sends
#   field     ThingSpeak field number (field8 is the status code: STATUS_FIELD)
#   lo, hi    the physical range, both included: the gateway refuses a value outside it (ints:
#             a float constant is one more object in the board's RAM)
#   climate   the member of DataTransfer PicoCharge/Climate's JSON that carries it, or None
# What only the gateway derives from it (ThingSpeak's field list, the API's pattern for an id)
# is derived there: this module is in the board's RAM.
READINGS = (
    ("temp_c", "degC", "Enclosure temperature", "Temperature", "Body", None, "Celsius", 1,
     -50, 150, None),                   # DHT11 0..50, other sensors -40..125
    ("humidity", "%RH", "Enclosure humidity", None, None, None, None, 2,
     0, 100, "humidity"),
    ("current_a", "A", "Current", "Current.Import", "Outlet", None, "A", 3,
     -1000, 1000, None),                # negative: export; DC fast chargers reach 500 A
    ("voltage_v", "V", "Voltage", "Voltage", "Outlet", None, "V", 4,
     0, 1500, None),                    # AC mains 0..480 V, DC charging up to 1000 V
    ("power_w", "W", "Power", "Power.Active.Import", "Outlet", None, "W", 5,
     -1000000, 1000000, None),          # 1 MW either way: beyond any charger
    ("energy_wh", "Wh", "Energy", "Energy.Active.Import.Register", "Outlet", None, "Wh", 6,
     0, 1000000000000, None),           # a register: never negative, 1 TWh at most
    ("chip_temp_c", "degC", "Board temperature", "Temperature", None, None, "Celsius", 7,
     -50, 150, "board_temp_c"),         # RP2040 on-die sensor, specified -20..85
)
# the columns of a row
KEY = 0
UNIT = 1
LABEL = 2
MEASURAND = 3
LOCATION = 4
PHASE = 5
OCPP_UNIT = 6
FIELD = 7
LO = 8
HI = 9
CLIMATE = 10
# the rows (and State.values slots)
TEMP = 0
HUMIDITY = 1
CURRENT = 2
VOLTAGE = 3
POWER = 4
ENERGY = 5
CHIP_TEMP = 6

READING_KEYS = tuple(r[KEY] for r in READINGS)
STATUS_FIELD = 8    # ThingSpeak's field8: the status code

# OCPP 1.6 ChargePointStatus <-> numeric status code (ThingSpeak field8)
STATUSES = ("Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE",
            "Finishing", "Reserved", "Unavailable", "Faulted")

# --- the station id ----------------------------------------------------------------------
# One rule at every door (the board's config, the gateway's API, CLI and OCPP WebSocket): the
# charge point identity of OCPP 1.6 is the last segment of the URL path; the 1.6 security
# whitepaper and OCPP 2.0.1 hold it to 48 characters. Only URL-unreserved characters (no
# escaping anywhere, and no ":", which HTTP Basic auth's user:password cannot carry).
STATION_ID_MAX = 48
STATION_ID_RULE = ("station id must be 1-48 characters of A-Z a-z 0-9 - _ . starting with a letter "
                   "or a digit (the charge point identity: the last part of the OCPP URL)")


def station_id_error(sid):
    """None when `sid` is a good station id, else what is wrong (STATION_ID_RULE, the same
    text at every door). No regular expression: it runs on the board too. The first character
    is a letter or a digit: '.', '..' and '-x' would be path segments or options elsewhere (a
    URL's /ocpp/.. , a file name, `picocharge gateway remove-station -x`)."""
    if isinstance(sid, str) and 0 < len(sid) <= STATION_ID_MAX and sid[0] not in "-_.":
        for c in sid:
            if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in "-_."):
                return STATION_ID_RULE
        return None
    return STATION_ID_RULE


# --- lookups -------------------------------------------------------------------------------

def describe():
    """The table for the web pages (JSON-able): [{key, label, unit}] in the table's order."""
    return [{"key": r[KEY], "label": r[LABEL], "unit": r[UNIT]} for r in READINGS]


# --- status codes --------------------------------------------------------------------------

def status_code(status):
    try:
        return STATUSES.index(status)
    except ValueError:
        return -1


def status_name(code):
    if 0 <= code < len(STATUSES):
        return STATUSES[code]
    return "Unknown"


# --- payloads ------------------------------------------------------------------------------

def thingspeak_fields(reading):
    """[(name, value)] for ThingSpeak: field1..field8 from a reading dict (None values left out)."""
    out = []
    for r in READINGS:
        v = reading.get(r[KEY])
        if v is not None:
            out.append(("field%d" % r[FIELD], v))
    v = reading.get("status_code")
    if v is None and reading.get("status") is not None:
        v = status_code(reading["status"])
    if v is not None:
        out.append(("field%d" % STATUS_FIELD, v))
    return out


def telemetry_topic(prefix, station_id):
    return "%s/%s/telemetry" % (prefix, station_id)


def status_topic(prefix, station_id):
    return "%s/%s/status" % (prefix, station_id)


OFFLINE_PAYLOAD = b'{"state":"offline"}'


def telemetry_json(reading):
    """JSON telemetry payload: the reading keys that are set, plus status/ts when known."""
    d = {}
    for k in READING_KEYS:
        v = reading.get(k)
        if v is not None:
            d[k] = v
    for k in ("status", "ts", "seq", "fault"):
        if reading.get(k) is not None:
            d[k] = reading[k]
    return json.dumps(d)


def status_json(state, status, fault=None, relay=None):
    d = {"state": state, "status": status}
    if fault:
        d["fault"] = fault
    if relay is not None:
        d["relay"] = relay
    return json.dumps(d)
