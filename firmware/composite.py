# OCPP 1.6 Smart Charging: the composite limit that charging profiles give at a moment (OCPP 1.6
# edition 2, sections 3.13 and 7.7-7.10). Pure logic, no I/O and no clock: the same code runs on
# the board and under CPython (tests/firmware_smart). It is imported only when the limit has to
# be worked out again or a Smart Charging call comes (smartlimit.py, ocpp_smart.py), then dropped;
# chargeprofile.py makes the flat form below from a profile as received.
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
NEVER = 1 << 40   # a time after every profile's end (epoch s)
_DAY = const(86400)
_WEEK = const(604800)


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
