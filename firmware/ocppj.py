# OCPP-J 1.6 framing and message building/parsing. Pure logic: no I/O, no clock of its own
# (timestamps are passed in: epoch seconds, or ISO 8601 text), so it runs under MicroPython
# and CPython and is tested without sockets.
#
# The station's own clock is kept in integer milliseconds (iso_ms, parse_iso_ms): a Pico W's
# floats are single precision, and an epoch in a float32 is only good to about 2 minutes.
#
#   CALL       [2, "<id>", "<Action>", {payload}]
#   CALLRESULT [3, "<id>", {payload}]
#   CALLERROR  [4, "<id>", "<errorCode>", "<errorDescription>", {errorDetails}]
#
# Of the firmware's own it imports only fields (the reading vocabulary; not even compat: plain
# ints, no const()), because the gateway's tools import it too, as picocharge.firmware.ocppj.
import json

try:
    from . import fields   # CPython, as picocharge.firmware.ocppj
except ImportError:
    import fields          # the board (and firmware/ on sys.path)

CALL = 2
CALLRESULT = 3
CALLERROR = 4

# OCPP-J 1.6 error codes (section 4.2.3 of the OCPP-J specification)
NOT_IMPLEMENTED = "NotImplemented"
NOT_SUPPORTED = "NotSupported"
INTERNAL_ERROR = "InternalError"
PROTOCOL_ERROR = "ProtocolError"
FORMATION_VIOLATION = "FormationViolation"
PROPERTY_CONSTRAINT = "PropertyConstraintViolation"
OCCURENCE_CONSTRAINT = "OccurenceConstraintViolation"  # sic, as the specification spells it
TYPE_CONSTRAINT = "TypeConstraintViolation"

# The id used in a CALLERROR when a frame is too broken to carry a usable message id.
UNKNOWN_ID = "-1"
_MAX_ID = 36  # OCPP-J: a unique id is at most 36 characters


class FrameError(ValueError):
    """A frame we must answer with a CALLERROR: `code`, `msg_id` (UNKNOWN_ID if unknown)."""

    def __init__(self, code, description, msg_id=UNKNOWN_ID):
        super().__init__(description)
        self.code = code
        self.description = description
        self.msg_id = msg_id


def parse(text):
    """(type, id, action, payload) of a frame; action is None for CALLRESULT, and for a
    CALLERROR the payload is (code, description, details). Raises FrameError."""
    try:
        msg = json.loads(text)
    except Exception:  # ValueError; MemoryError/RecursionError for absurd nesting
        msg = None
        raise FrameError(FORMATION_VIOLATION, "frame is not valid JSON")
    if not isinstance(msg, list) or len(msg) < 3:
        raise FrameError(FORMATION_VIOLATION, "frame is not a JSON array [type, id, ...]")
    mtype = msg[0]
    mid = msg[1]
    if not isinstance(mid, str) or not mid or len(mid) > _MAX_ID:
        raise FrameError(FORMATION_VIOLATION, "message id must be a string of 1-36 characters")
    if type(mtype) is not int:
        raise FrameError(FORMATION_VIOLATION, "message type must be an integer", mid)
    if mtype == CALL:
        if len(msg) != 4:
            raise FrameError(FORMATION_VIOLATION, "CALL must have 4 elements", mid)
        action = msg[2]
        if not isinstance(action, str) or not action:
            raise FrameError(FORMATION_VIOLATION, "CALL action must be a non-empty string", mid)
        if not isinstance(msg[3], dict):
            raise FrameError(FORMATION_VIOLATION, "CALL payload must be a JSON object", mid)
        return CALL, mid, action, msg[3]
    if mtype == CALLRESULT:
        if len(msg) != 3 or not isinstance(msg[2], dict):
            raise FrameError(FORMATION_VIOLATION, "CALLRESULT must be [3, id, {payload}]", mid)
        return CALLRESULT, mid, None, msg[2]
    if mtype == CALLERROR:
        if len(msg) != 5 or not isinstance(msg[2], str) or not isinstance(msg[3], str) \
                or not isinstance(msg[4], dict):
            raise FrameError(FORMATION_VIOLATION,
                             "CALLERROR must be [4, id, code, description, {details}]", mid)
        return CALLERROR, mid, None, (msg[2], msg[3], msg[4])
    raise FrameError(PROTOCOL_ERROR, "unknown message type %r" % (mtype,), mid)


def call(mid, action, payload):
    return json.dumps([CALL, mid, action, payload])


def call_frame(mid, action, size, tx_id=None, room=0, into=None):
    """The buffer of a CALL frame around a payload of `size` bytes already in JSON (as
    journalled), with "transactionId" put in front when given, `room` free bytes in front
    (where the WebSocket layer puts its header: ws.HEADROOM): (buf, at, skip), the payload
    from its byte `skip` on goes to buf[at:-1]. No decode/re-encode of the payload: the
    journal reads it from flash straight into place. The buffer is a memoryview of `into`
    (a bytearray kept for this) when the frame fits in it, else a new bytearray."""
    head = '[2, "%s", "%s", ' % (mid, action)
    skip = 0
    if tx_id is not None:
        if size == 2:  # {}
            head += '{"transactionId": %d}' % tx_id
            skip = 2
        else:
            head += '{"transactionId": %d, ' % tx_id
            skip = 1  # its "{"
    head = head.encode()
    at = room + len(head)
    n = at + size - skip + 1
    buf = memoryview(into)[:n] if into and len(into) >= n else bytearray(n)
    buf[room:at] = head
    buf[-1] = 0x5D  # ]
    return buf, at, skip


def pieces(v, depth):
    """The JSON of v as small strs (ws.send_pieces): a dict or list split at its items down
    to `depth` levels, each deeper value one json.dumps."""
    if depth and isinstance(v, (dict, list)) and v:
        d = isinstance(v, dict)
        sep = "{" if d else "["
        for x in v:
            if d:
                yield sep + json.dumps(x) + ":"
                x = v[x]
            first = not d
            for p in pieces(x, depth - 1):
                yield sep + p if first else p
                first = False
            sep = ","
        yield "}" if d else "]"
    else:
        yield json.dumps(v)


def result_pieces(mid, payload):
    """The CALLRESULT [3, mid, payload] as a function that yields it in pieces (for
    ws.send_pieces): the payload split down to the objects in its lists (a GetConfiguration
    answer: one piece a key)."""
    def gen():
        yield '[%d, %s, ' % (CALLRESULT, json.dumps(mid))
        for p in pieces(payload, 2):
            yield p
        yield "]"
    return gen


def error(mid, code, description="", details=None):
    return json.dumps([CALLERROR, mid, code, description[:255], details or {}])


class Ids:
    """Unique message ids: "<prefix>-<n>", the prefix random per boot (injected in tests),
    so ids never repeat across reboots and a journalled message keeps its id on retries."""

    def __init__(self, prefix, start=1):
        self.prefix = prefix
        self.n = start

    def next(self):
        n = self.n
        self.n += 1
        return "%s-%d" % (self.prefix, n)


# --- time: ISO 8601 UTC <-> epoch seconds (own arithmetic: the boards' epochs differ) -----

def _days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z):
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def iso(epoch_s):
    """'2026-11-25T09:41:07.123Z' for epoch seconds (float or int), millisecond precision;
    ISO text is returned as it is."""
    if isinstance(epoch_s, str):
        return epoch_s
    return iso_ms(int(epoch_s * 1000 + 0.5))


def iso_ms(ms):
    """iso() of integer epoch milliseconds: exact on any port."""
    s, ms = divmod(ms, 1000)
    days, sod = divmod(s, 86400)
    y, mo, d = _civil_from_days(days)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (y, mo, d, sod // 3600, sod // 60 % 60, sod % 60, ms)


def parse_iso_ms(text):
    """Integer epoch milliseconds of an ISO 8601 date-time with Z or +hh:mm (a fraction
    beyond milliseconds is cut); ValueError if unreadable."""
    try:
        y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
        h, mi, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
        if text[4] != "-" or text[7] != "-" or text[10] not in "Tt " or text[13] != ":":
            raise ValueError
        rest = text[19:]
        frac = 0
        if rest[:1] == ".":
            i = 1
            while i < len(rest) and rest[i].isdigit():
                i += 1
            frac = int((rest[1:i] + "00")[:3])
            rest = rest[i:]
        off = 0
        if rest in ("Z", "z", ""):
            pass
        elif rest[0] in "+-" and len(rest) == 6 and rest[3] == ":":
            off = int(rest[1:3]) * 3600 + int(rest[4:6]) * 60
            if rest[0] == "+":
                off = -off
        else:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError("not an ISO 8601 date-time: %r" % (text[:40],))
    return (_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s + off) * 1000 + frac


# --- outgoing payloads -------------------------------------------------------------------

def measurand_row(m):
    """The row of fields.READINGS the station sends measurand `m` from: the first with that
    measurand and a location; None if it sends no such measurand."""
    for r in fields.READINGS:
        if r[fields.MEASURAND] == m and r[fields.LOCATION]:
            return r
    return None


# MeterValuesSampledData's default: every measurand the station sends (measurand_row), in this order
DEFAULT_MEASURANDS = "Energy.Active.Import.Register,Current.Import,Voltage,Power.Active.Import,Temperature"
DEFAULT_ALIGNED = "Energy.Active.Import.Register,Temperature"  # MeterValuesAlignedData
_DAY_MS = 86400000


def next_aligned(t, iv):
    """The first clock-aligned time after `t` (integer epoch ms) for ClockAlignedDataInterval
    `iv` (s): a whole number of `iv` seconds after midnight UTC. An interval that does not
    divide the day starts over at the next midnight."""
    iv *= 1000
    day = t - t % _DAY_MS
    n = day + ((t - day) // iv + 1) * iv
    return n if n < day + _DAY_MS else day + _DAY_MS


def split_csl(text):
    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            out.append(part)
    return out


def check_measurands(text):
    """The list of measurands in a comma-separated value, or ValueError naming the bad one."""
    out = split_csl(text)
    for m in out:
        if measurand_row(m) is None:
            raise ValueError("unsupported measurand %r (supported: %s)" % (m, DEFAULT_MEASURANDS))
    return out


def fmt(v):
    if isinstance(v, float):
        s = "%.3f" % v
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        return s if s not in ("", "-0") else "0"
    return str(v)


def meter_value(ts, reading, measurands, context):
    """One MeterValue {timestamp, sampledValue[...]} from a reading dict (missing readings
    are left out); values are strings, as OCPP 1.6 requires."""
    sv = []
    for m in measurands:
        r = measurand_row(m)
        v = reading.get(r[fields.KEY])
        if v is None:
            continue
        d = {"value": fmt(v), "context": context, "format": "Raw", "measurand": m,
             "location": r[fields.LOCATION], "unit": r[fields.OCPP_UNIT]}
        if r[fields.PHASE]:
            d["phase"] = r[fields.PHASE]
        sv.append(d)
    return {"timestamp": iso(ts), "sampledValue": sv}


# the rows that go in DataTransfer PicoCharge/Climate (OCPP 1.6 has no measurand for them), in order
CLIMATE_ROWS = tuple(i for i in range(len(fields.READINGS)) if fields.READINGS[i][fields.CLIMATE])


def climate_of(values):
    """The data of DataTransfer PicoCharge/Climate from a State.values list (one slot per row of
    fields.READINGS): a JSON object in a string with the CLIMATE_ROWS readings (the enclosure's
    %RH, the RP2040's temperature), each left out when None; None when all are."""
    parts = []
    for i in CLIMATE_ROWS:
        v = values[i]
        if v is not None:
            parts.append('"' + fields.READINGS[i][fields.CLIMATE] + '":' + fmt(v))
    if not parts:
        return None
    return "{" + ",".join(parts) + "}"


def climate(*values):
    """climate_of() of the CLIMATE_ROWS readings' values given in that order."""
    v = [None] * len(fields.READINGS)
    for n in range(len(CLIMATE_ROWS)):
        v[CLIMATE_ROWS[n]] = values[n]
    return climate_of(v)


def boot_notification(vendor, model, serial, fw_version):
    return {"chargePointVendor": vendor[:20], "chargePointModel": model[:20],
            "chargePointSerialNumber": serial[:25], "chargeBoxSerialNumber": serial[:25],
            "firmwareVersion": fw_version[:50]}


def status_notification(connector, status, ts, error_code="NoError", info=None):
    p = {"connectorId": connector, "errorCode": error_code, "status": status, "timestamp": iso(ts)}
    if info:
        p["info"] = info[:50]
    return p


def start_transaction(connector, id_tag, meter_start_wh, ts):
    return {"connectorId": connector, "idTag": id_tag, "meterStart": int(meter_start_wh),
            "timestamp": iso(ts)}


def stop_transaction(tx_id, id_tag, meter_stop_wh, ts, reason, transaction_data=None):
    p = {"transactionId": tx_id, "meterStop": int(meter_stop_wh), "timestamp": iso(ts),
         "reason": reason}
    if id_tag:
        p["idTag"] = id_tag
    if transaction_data:
        p["transactionData"] = transaction_data
    return p


def meter_values(connector, tx_id, values):
    p = {"connectorId": connector, "meterValue": values}
    if tx_id is not None:
        p["transactionId"] = tx_id
    return p
