# The station's Smart Charging limit: the charging profiles on flash (profiles.json: they survive
# a reboot and take no RAM between uses) and the composite limit they give now, kept by the charge
# point as cp.limit_a (A per phase) and worked out again at cp.limit_due (the next change of a
# schedule, at most an hour away; None while no profile is installed). Imported for that by
# chargepoint.ChargePoint.smart, and by ocpp_smart for the calls, then dropped with composite.
import json
import os

import composite
import log
import ocppj
from compat import const, ticks_ms, ticks_add

L = log.get("smart")
FILE = "profiles.json"
_RECHECK_S = const(3600)   # the limit is worked out again at least this often


def load():
    """The installed profiles (composite's flat form); [] when there are none or the file is
    unreadable (then the station's own maximum applies, the safe side)."""
    try:
        with open(FILE) as f:
            ps = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(ps, list):
        return []
    return [p for p in ps if isinstance(p, list) and len(p) == 12]


def save(cp, ps):
    """Keep `ps` on flash (atomic rename) and have the limit worked out again at the next tick;
    with none left the file goes and the station's own maximum applies."""
    if ps:
        tmp = FILE + ".tmp"
        with open(tmp, "w") as f:
            json.dump(ps, f)
        os.rename(tmp, FILE)
        cp.limit_due = ticks_ms()
        return
    try:
        os.remove(FILE)
    except OSError:
        pass
    cp.limit_due = None
    _set(cp, hw(cp)[2], 0)


def hw(cp):
    """(voltage, phases, the most the station gives per phase in A): the config's charger."""
    c = cp.ctx.cfg["charger"]
    return c["supply_v"], c["phases"], c["max_current_a"]


def tx(cp):
    """(the running transaction's id: 0 while the central system has not given it, None when
    there is none; when it started, epoch s: its Transaction.Begin sample's timestamp)."""
    t = cp.conn.tx
    if not t:
        return None, None
    try:
        t0 = ocppj.parse_iso_ms(t["b"]["timestamp"]) // 1000
    except (KeyError, TypeError, ValueError):
        t0 = cp.now() // 1000
    return cp.journal.txid(t["ref"]) or 0, t0


def tick(cp):
    """The charge point's tick, when cp.limit_due has come (a schedule changes, a transaction
    started or ended): a profile from RemoteStartTransaction goes to the transaction it started,
    then the limit is worked out."""
    if cp.req_profile and cp.conn.tx:
        ps = load()
        composite.replace(ps, cp.req_profile)
        cp.req_profile = None
        save(cp, ps)
    refresh(cp)


def refresh(cp):
    """Work out the limit now (cp.limit_a) and when to do it again (cp.limit_due). TxProfiles
    left with no transaction running (it ended, or a power cut ended it) are removed: a TxProfile
    lasts as long as its transaction (OCPP 1.6 3.13.1)."""
    ps = load()
    txid, t0 = tx(cp)
    if txid is None and composite.clear(ps, purpose=composite.TX):
        save(cp, ps)
    if not ps:
        cp.limit_due = None
        _set(cp, hw(cp)[2], 0)
        return
    v, ph, mx = hw(cp)
    now = cp.now() // 1000
    lim, nxt = composite.limit_at(ps, now, 1, txid, t0, v, ph, mx)
    wait = _RECHECK_S
    if nxt - now < wait:
        wait = nxt - now if nxt > now else 1
    _set(cp, lim, wait)
    cp.limit_due = ticks_add(ticks_ms(), wait * 1000)


def _set(cp, lim, wait):
    lim = int(lim * 10 + 0.5) / 10
    if lim != cp.limit_a:
        L.info("limit %s A (next check in %d s)", lim, wait)
    cp.limit_a = lim
