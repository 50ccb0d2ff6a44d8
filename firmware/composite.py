# OCPP 1.6 Smart Charging: charging profiles in a compact form and the composite limit they
# give at a moment (OCPP 1.6 edition 2, sections 3.13 and 7.7-7.10). Pure logic, no I/O and no
# clock: the same code runs on the board and under CPython (tests/firmware_smart). It is imported
# only when a profile arrives or the limit has to be worked out again (ocpp_smart.py), then dropped.
#
# A profile is kept (on flash, and in RAM while it is looked at) as a flat list:
#   [id, connectorId, purpose, stackLevel, kind, validFrom, validTo, startSchedule, duration,
#    unit, periods, transactionId]
# purpose: 0 ChargePointMaxProfile, 1 TxDefaultProfile, 2 TxProfile; kind: "A" Absolute,
# "D" / "W" Recurring Daily / Weekly, "R" Relative; times in epoch seconds (None: not given);
# unit "A" or "W"; periods [[startPeriod s, limit, numberPhases or 0], ...] in ascending order;
# transactionId None = the running transaction (a TxProfile from RemoteStartTransaction).
#
# Limits are worked out per phase in amperes: a limit in W is divided by the configured voltage
# and the phases used (the period's numberPhases if it is given and smaller than the station's
# phases, else the station's). Composite at a moment: for each purpose the valid profile of the
# highest stack level that has a period running then; a TxProfile (of the running transaction)
# takes the place of the TxDefaultProfiles (a connector's own over connector 0's); the result is
# the smallest of that, the ChargePointMaxProfile and the station's own maximum.
from compat import const

ID = const(0)
CONN = const(1)
PURPOSE = const(2)
STACK = const(3)
KIND = const(4)
VFROM = const(5)
VTO = const(6)
START = const(7)
DUR = const(8)
UNIT = const(9)
PERIODS = const(10)
TXID = const(11)

MAX = const(0)
DEFAULT = const(1)
TX = const(2)
PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")
NEVER = 1 << 40   # a time after every profile's end (epoch s)
_DAY = const(86400)
_WEEK = const(604800)


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
        if purpose != TX:
            raise ProfileError("transactionId is only for a TxProfile")
        _int(p, "transactionId", -2147483648, 2147483647)
    if purpose == MAX and connector != 0:
        raise ProfileError("a ChargePointMaxProfile is set on connector 0")
    if purpose == TX and connector == 0:
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


def at(p, t, origin, volts, phases):
    """(limit in A per phase or None when the profile gives none at t, the next time after t at
    which that may change). origin: where a Relative schedule starts (the transaction's start)."""
    nxt = NEVER
    vf = p[VFROM]
    if vf is not None and t < vf:
        return None, vf
    vt = p[VTO]
    if vt is not None:
        if t >= vt:
            return None, NEVER
        nxt = vt
    kind = p[KIND]
    st = origin if kind == "R" else p[START]
    if kind == "D" or kind == "W":
        per = _DAY if kind == "D" else _WEEK
        st += (t - st) // per * per
        if st + per < nxt:
            nxt = st + per
    off = t - st
    if off < 0:
        return None, st if st < nxt else nxt
    dur = p[DUR]
    if dur is not None:
        if off >= dur:
            return None, nxt
        if st + dur < nxt:
            nxt = st + dur
    got = None
    for q in p[PERIODS]:
        if q[0] <= off:
            got = q
        else:
            if st + q[0] < nxt:
                nxt = st + q[0]
            break
    if got is None:
        return None, nxt
    lim = got[1]
    if p[UNIT] == "W":
        n = got[2]
        if not n or n > phases:
            n = phases
        lim = lim / (volts * n)
    return lim, nxt


def limit_at(profiles, t, connector, tx_id, tx_start, volts, phases, hw_max):
    """(the composite limit in A per phase at t for `connector`, the next time it may change).
    tx_id: the running transaction's id (0 when not known yet, None when there is none); a
    Relative schedule starts at tx_start, or at t without a transaction."""
    origin = t if tx_start is None else tx_start
    # the best limit and its stack level per slot, in locals (no list per call): the
    # ChargePointMaxProfile, a TxDefaultProfile on connector 0, one on the connector, a TxProfile
    m = d0 = d1 = tx = None
    lm = l0 = l1 = lt = -1
    nxt = NEVER
    for p in profiles:
        pu = p[PURPOSE]
        pc = p[CONN]
        if pu != MAX:
            if connector == 0:
                continue
            if pu == TX:
                if tx_id is None or pc != connector or (p[TXID] is not None and p[TXID] != tx_id):
                    continue
            elif pc != 0 and pc != connector:
                continue
        lim, n = at(p, t, origin, volts, phases)
        if n < nxt:
            nxt = n
        if lim is None:
            continue
        s = p[STACK]
        if pu == MAX:
            if s > lm:
                lm, m = s, lim
        elif pu == TX:
            if s > lt:
                lt, tx = s, lim
        elif pc == 0:
            if s > l0:
                l0, d0 = s, lim
        elif s > l1:
            l1, d1 = s, lim
    if tx is None:
        tx = d1 if d1 is not None else d0
    out = hw_max
    if m is not None and m < out:
        out = m
    if tx is not None and tx < out:
        out = tx
    return out, nxt


def schedule(profiles, t0, duration, connector, tx_id, tx_start, volts, phases, hw_max, unit, max_periods):
    """GetCompositeSchedule's chargingSchedulePeriod from t0 for `duration` s: [{startPeriod,
    limit}] in `unit` ("A", or "W" at the configured voltage and phases), one entry per change,
    at most max_periods (the rest is cut)."""
    out = []
    t = t0
    end = t0 + duration
    last = None
    while t < end and len(out) < max_periods:
        lim, nxt = limit_at(profiles, t, connector, tx_id, tx_start, volts, phases, hw_max)
        if unit == "W":
            lim = lim * volts * phases
        lim = int(lim * 10 + 0.5) / 10
        if lim != last:
            out.append({"startPeriod": t - t0, "limit": lim})
            last = lim
        t = nxt
    return out


def replace(profiles, new):
    """Install `new`: it takes the place of the profile with its id, and of one with the same
    connector, purpose and stack level (7.8: the one set last wins). The list, changed in place."""
    i = 0
    while i < len(profiles):
        p = profiles[i]
        if p[ID] == new[ID] or (p[CONN] == new[CONN] and p[PURPOSE] == new[PURPOSE] and p[STACK] == new[STACK]):
            profiles.pop(i)
        else:
            i += 1
    profiles.append(new)


def clear(profiles, pid=None, connector=None, purpose=None, stack=None):
    """ClearChargingProfile: remove the profile with id `pid` (the other criteria then do not
    count), else every profile matching all the criteria given. How many were removed."""
    n = len(profiles)
    i = 0
    while i < len(profiles):
        p = profiles[i]
        if pid is not None:
            hit = p[ID] == pid
        else:
            hit = ((connector is None or p[CONN] == connector) and (purpose is None or p[PURPOSE] == purpose)
                   and (stack is None or p[STACK] == stack))
        if hit:
            profiles.pop(i)
        else:
            i += 1
    return n - len(profiles)
