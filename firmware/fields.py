# The one field map and payload shapes shared by the firmware's direct uploads and
# the gateway's re-uploads (ThingSpeak fields, MQTT topics and JSON). Pure logic.
try:
    import ujson as json
except ImportError:
    import json

# ThingSpeak field number -> (reading key, label shown on the channel, unit)
THINGSPEAK_FIELDS = (
    (1, "temp_c", "Enclosure temperature", "degC"),
    (2, "humidity", "Enclosure humidity", "%RH"),
    (3, "current_a", "Current", "A"),
    (4, "voltage_v", "Voltage", "V"),
    (5, "power_w", "Power", "W"),
    (6, "energy_wh", "Energy", "Wh"),
    (7, "chip_temp_c", "Board temperature", "degC"),
    (8, "status_code", "Status code", ""),
)

# OCPP 1.6 ChargePointStatus <-> numeric status code (ThingSpeak field8)
STATUSES = ("Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE",
            "Finishing", "Reserved", "Unavailable", "Faulted")

READING_KEYS = ("temp_c", "humidity", "current_a", "voltage_v", "power_w", "energy_wh",
                "chip_temp_c")


def status_code(status):
    try:
        return STATUSES.index(status)
    except ValueError:
        return -1


def status_name(code):
    if 0 <= code < len(STATUSES):
        return STATUSES[code]
    return "Unknown"


def thingspeak_fields(reading):
    """[(name, value)] for ThingSpeak: field1..field8 from a reading dict (None values left out)."""
    out = []
    for n, key, _label, _unit in THINGSPEAK_FIELDS:
        if key == "status_code":
            v = reading.get("status_code")
            if v is None and reading.get("status") is not None:
                v = status_code(reading["status"])
        else:
            v = reading.get(key)
        if v is not None:
            out.append(("field%d" % n, v))
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
