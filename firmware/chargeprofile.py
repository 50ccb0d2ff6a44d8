# A charging profile as a central system sends it (SetChargingProfile's csChargingProfiles,
# RemoteStartTransaction's chargingProfile) checked and made into composite.py's flat form. Pure
# logic; imported only while such a call is answered (ocpp_smart.py), then dropped.
from compat import const

PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")   # composite.MAX, DEFAULT, TX
_MAX = const(0)
_TX = const(2)


class ProfileError(ValueError):
    """A profile the station refuses; the text says which field and why."""


def _time(p, k, parse):
    v = p.get(k)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ProfileError("%s must be a date-time string" % k)
    try:
        return parse(v) // 1000
    except ValueError:
        raise ProfileError("%s is not an ISO 8601 date-time: %r" % (k, v[:40]))


def _int(d, k, lo, hi, need=True):
    v = d.get(k)
    if v is None and not need:
        return None
    if type(v) is not int or v < lo or v > hi:
        raise ProfileError("%s must be an integer %d..%d, not %r" % (k, lo, hi, v))
    return v


def compact(p, connector, parse, max_stack, max_periods):
    """The flat form of csChargingProfiles `p` (a dict as received) for `connector`; parse(text)
    gives epoch ms of an ISO date-time (ocppj.parse_iso_ms). Raises ProfileError saying what is
    wrong: the station then answers Rejected."""
    if not isinstance(p, dict):
        raise ProfileError("the charging profile must be an object")
    pid = _int(p, "chargingProfileId", -2147483648, 2147483647)
    stack = _int(p, "stackLevel", 0, max_stack)
    try:
        purpose = PURPOSES.index(p.get("chargingProfilePurpose"))
    except ValueError:
        raise ProfileError("chargingProfilePurpose must be one of " + ", ".join(PURPOSES))
    kind = p.get("chargingProfileKind")
    rec = p.get("recurrencyKind")
    sch = p.get("chargingSchedule")
    if not isinstance(sch, dict):
        raise ProfileError("chargingSchedule must be an object")
    start = _time(sch, "startSchedule", parse)
    if kind == "Absolute":
        k = "A" if start is not None else "R"  # no start: from the start of charging (7.8)
    elif kind == "Relative":
        k = "R"
        start = None
    elif kind == "Recurring":
        if rec not in ("Daily", "Weekly"):
            raise ProfileError("a Recurring profile needs recurrencyKind Daily or Weekly")
        if start is None:
            raise ProfileError("a Recurring profile needs chargingSchedule.startSchedule")
        k = rec[0]
    else:
        raise ProfileError("chargingProfileKind must be Absolute, Recurring or Relative")
    if rec is not None and kind != "Recurring":
        raise ProfileError("recurrencyKind is only for a Recurring profile")
    txid = p.get("transactionId")
    if txid is not None:
        if purpose != _TX:
            raise ProfileError("transactionId is only for a TxProfile")
        _int(p, "transactionId", -2147483648, 2147483647)
    if purpose == _MAX and connector != 0:
        raise ProfileError("a ChargePointMaxProfile is set on connector 0")
    if purpose == _TX and connector == 0:
        raise ProfileError("a TxProfile is set on a connector (1), not 0")
    dur = _int(sch, "duration", 0, 2147483647, False)
    unit = sch.get("chargingRateUnit")
    if unit not in ("A", "W"):
        raise ProfileError("chargingSchedule.chargingRateUnit must be A or W")
    src = sch.get("chargingSchedulePeriod")
    if not isinstance(src, list) or not src:
        raise ProfileError("chargingSchedule.chargingSchedulePeriod must be a non-empty array")
    if len(src) > max_periods:
        raise ProfileError("at most %d periods (ChargingScheduleMaxPeriods), not %d" % (max_periods, len(src)))
    periods = []
    last = -1
    for q in src:
        if not isinstance(q, dict):
            raise ProfileError("a chargingSchedulePeriod must be an object")
        sp = _int(q, "startPeriod", 0, 2147483647)
        if sp <= last or (last < 0 and sp != 0):
            raise ProfileError("startPeriod must start at 0 and increase (%d after %d)" % (sp, last))
        last = sp
        lim = q.get("limit")
        if type(lim) not in (int, float) or lim < 0 or lim > 1000000:
            raise ProfileError("limit must be a number 0..1000000, not %r" % (lim,))
        n = _int(q, "numberPhases", 1, 3, False) or 0
        periods.append([sp, lim, n])
    return [pid, connector, purpose, stack, k, _time(p, "validFrom", parse), _time(p, "validTo", parse),
            start, dur or None, unit, periods, txid]
