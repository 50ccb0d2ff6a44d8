"""The reading vocabulary at the gateway's door: every value and time a station or a publisher
sends is checked here, in one place, before anything is stored.

- A value is a finite number inside the physical range of its reading key (`RANGES`, in the
  units of picocharge.firmware.fields: degC, %RH, A, V, W, Wh). NaN, +-Infinity and JSON's
  1e999 (which Python reads as infinity) are refused, and so is a value no sensor or meter of a
  charging station can report: it would be a broken sensor or a forged message, and one such
  value stored breaks every JSON consumer downstream (`/api/stations` emitted `Infinity`).
- A timestamp is ISO 8601, and lies inside a sane window: not before `EARLIEST_TS`
  (2000-01-01, the epoch of MicroPython's embedded ports: a board whose clock was never set
  reports a time after it) and not more than `MAX_FUTURE_S` (a day) ahead of the gateway's
  clock (a board's clock may drift, and its time zone be misconfigured, by hours; a year ahead
  is a bug). Both are module constants; tests and deployments may change them.

What each door does with a refusal: OCPP answers a CALLERROR (PropertyConstraintViolation for
a value or time out of range, TypeConstraintViolation for one that is not a number or not a
time), ingest (HTTP /update) answers 400 with the ValueError's message, MQTT ingest drops the
message and logs it (once, with a count). A ValueError here always says which field and why.
"""
import time
from datetime import datetime, timezone

from picocharge.firmware import fields

# ThingSpeak field number -> (reading key, label shown on the channel, unit), field8 the status
# code: the gateway's form of the table's field column (the board builds its fields from the table)
THINGSPEAK_FIELDS = tuple((r[fields.FIELD], r[fields.KEY], r[fields.LABEL], r[fields.UNIT])
                          for r in fields.READINGS) + ((fields.STATUS_FIELD, "status_code", "Status code", ""),)
# (lowest, highest), both included, per reading key: the table's physical ranges
RANGES = {r[fields.KEY]: (r[fields.LO], r[fields.HI]) for r in fields.READINGS}
UNITS = {r[fields.KEY]: r[fields.UNIT] for r in fields.READINGS}
# an OCPP meter register (meterStart / meterStop, Wh, integers)
METER_RANGE = (0, 10 ** 12)

EARLIEST_TS = "2000-01-01T00:00:00Z"
MAX_FUTURE_S = 86400.0

# units as people read them (the table keeps ThingSpeak's spellings): the dashboard, the demo
UNIT_SYMBOLS = {"degC": "\u00b0C", "%RH": "%"}


def unit_symbol(unit):
    return UNIT_SYMBOLS.get(unit, unit)


_FIELD_KEYS = {"field%d" % n: key for n, key, _l, _u in THINGSPEAK_FIELDS}
_STATUS_FIELD = "field%d" % fields.STATUS_FIELD
_ISO = "%Y-%m-%dT%H:%M:%SZ"


def check(key, v, name=None):
    """v (a float) if it is inside the range of reading `key`, else ValueError naming `name`
    (the field as the sender spelled it; default the key). NaN fails every comparison, so one
    chained comparison also refuses NaN and the infinities."""
    lo, hi = RANGES[key]
    if lo <= v <= hi:
        return v
    name = name or key
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError("%s must be a finite number, not %r" % (name, v))
    raise ValueError("%s %r is outside its range %g..%g %s" % (name, v, lo, hi, UNITS.get(key, "")))


def _num(v, key):
    """A finite float from a JSON number or a numeric string; ValueError names `key`."""
    if isinstance(v, bool):
        raise ValueError("%s must be a number, not %r" % (key, v))
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("%s must be a number, not %r" % (key, _short(v)))
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError("%s must be a finite number" % key)
    return f


def number(key, v, name=None):
    """A sent value for reading `key` as a float inside its range; ValueError says why not."""
    return check(key, _num(v, name or key), name)


def _short(v):
    s = repr(v) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:40] + "..."


def _ts(v):
    """created_at / ts as ISO 8601 UTC (now when empty); ValueError says what is wrong.
    Parsing only: `timestamp()` also checks the window."""
    if v in (None, ""):
        return datetime.now(timezone.utc).strftime(_ISO)
    if not isinstance(v, str):
        raise ValueError("created_at/ts must be an ISO 8601 string such as 2026-01-31T12:00:00Z")
    try:
        d = datetime.fromisoformat(v.strip().replace("Z", "+00:00").replace(" ", "T"))
        if d.tzinfo is None:
            d = d.replace(tzinfo=timezone.utc)
        d = d.astimezone(timezone.utc)
        # %04d, not strftime's %Y: year 999 would be '999', which sorts after '2026' as text
        return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (d.year, d.month, d.day, d.hour, d.minute, d.second)
    except (ValueError, OverflowError):
        # OverflowError: a valid date whose UTC time is before year 1 or after 9999
        # ("0001-01-01T00:00:00+01:00")
        raise ValueError("created_at/ts %r is not ISO 8601 (e.g. 2026-01-31T12:00:00Z)" % v[:40])


_latest = [None, None]


def latest_ts():
    """The latest acceptable time, 'YYYY-MM-DDTHH:MM:SSZ' (computed once per second)."""
    s = int(time.time())
    if s != _latest[0]:
        _latest[1] = time.strftime(_ISO, time.gmtime(s + MAX_FUTURE_S))
        _latest[0] = s
    return _latest[1]


def in_window(iso, name="ts"):
    """iso (a normalised 'YYYY-MM-DDTHH:MM:SSZ') if inside the window, else ValueError. The
    normalised form sorts as text, so this is two string comparisons."""
    if iso < EARLIEST_TS:
        raise ValueError("%s %s is before %s: set the station's clock (NTP)" % (name, iso, EARLIEST_TS))
    if iso > latest_ts():
        raise ValueError("%s %s is more than %g hours ahead of the gateway's clock: check the station's "
                         "clock and time zone" % (name, iso, MAX_FUTURE_S / 3600))
    return iso


def timestamp(v, name="created_at/ts"):
    """A sent timestamp (None/"": now) normalised and inside the window; ValueError says why not."""
    return in_window(_ts(v), name)


def reading_from_dict(d):
    """A reading row from MQTT telemetry JSON (reading keys, status, ts)."""
    r = {}
    for k in fields.READING_KEYS:
        if d.get(k) is not None:
            r[k] = number(k, d[k])
    st = d.get("status")
    if st is not None:
        if not isinstance(st, str) or st not in fields.STATUSES:
            raise ValueError("status %r is not an OCPP 1.6 ChargePointStatus" % (_short(st),))
        r["status"] = st
    if not r:
        raise ValueError("no reading keys (one of %s)" % ", ".join(fields.READING_KEYS))
    r["ts"] = timestamp(d.get("ts"))
    return r


def reading_from_fields(params):
    """A reading row from ThingSpeak-style field1..field8 (+created_at)."""
    r = {}
    for name, key in _FIELD_KEYS.items():
        v = params.get(name)
        if v in (None, ""):
            continue
        if name == _STATUS_FIELD:
            f = _num(v, name)
            if f != int(f) or not -1 <= f < 100:
                raise ValueError("%s (status code) must be an integer 0..%d, not %r"
                                 % (name, len(fields.STATUSES) - 1, _short(v)))
            r["status"] = fields.status_name(int(f))
        else:
            r[key] = number(key, v, name)
    if not r:
        raise ValueError("no fields: send field1..field8 (%s)" % ", ".join(
            "%s=%s" % (n, k) for n, k in _FIELD_KEYS.items()))
    r["ts"] = timestamp(params.get("created_at"))
    return r
