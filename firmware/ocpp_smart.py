# OCPP 1.6 Smart Charging on the station: the charging profiles on flash (profiles.json, so they
# survive a reboot and take no RAM between uses), SetChargingProfile, ClearChargingProfile,
# GetCompositeSchedule, and the composite limit the charge point keeps (cp.limit_a, worked out
# again at cp.limit_due: the next change of a schedule, at most an hour away). Like ocpp_calls,
# this module and composite.py are imported when needed and dropped again (chargepoint.smart).
import json
import os

import composite
import log
import ocppj
from compat import const, ticks_ms, ticks_add

L = log.get("smart")
FILE = "profiles.json"
_RECHECK_S = const(3600)   # the limit is worked out again at least this often
_MAX_DURATION = const(2678400)   # GetCompositeSchedule: at most 31 days ahead


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


def save(ps):
    if not ps:
        try:
            os.remove(FILE)
        except OSError:
            pass
        return
    tmp = FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(ps, f)
    os.rename(tmp, FILE)


def _hw(cp):
    c = cp.ctx.cfg["charger"]
    return c["voltage_v"], c["phases"], c["max_current_a"]


def _tx(cp):
    """(the running transaction's id: 0 while the central system has not given it, None when
    there is none; when it started, epoch s)."""
    tx = cp.conn.tx
    if not tx:
        return None, None
    return cp.journal.txid(tx["ref"]) or 0, cp.tx_t0


def _compact(cp, p, connector):
    k = cp.keys
    return composite.compact(p, connector, ocppj.parse_iso_ms, k["ChargeProfileMaxStackLevel"],
                             k["ChargingScheduleMaxPeriods"])


def install(cp, prof):
    """Install a flat profile (replacing one with its id or its connector, purpose and stack
    level); False when MaxChargingProfilesInstalled would be passed."""
    ps = load()
    composite.replace(ps, prof)
    if len(ps) > cp.keys["MaxChargingProfilesInstalled"]:
        return False
    save(ps)
    if prof[composite.PURPOSE] == composite.TX:
        cp.smart_tx = True
    cp.limit_due = ticks_ms()     # the limit is worked out again at the next tick
    return True


def SetChargingProfile(cp, p):
    """SetChargingProfile.conf: Accepted or Rejected (the reason is logged)."""
    c = p["connectorId"]
    try:
        if c not in (0, 1):
            raise composite.ProfileError("connectorId %d: the station has connectors 0 and 1" % c)
        prof = _compact(cp, p["csChargingProfiles"], c)
        if prof[composite.PURPOSE] == composite.TX:
            txid, _ = _tx(cp)
            if txid is None:
                raise composite.ProfileError("a TxProfile needs a running transaction, and there is none")
            want = prof[composite.TXID]
            if want is not None and want != txid:
                raise composite.ProfileError("transactionId %d is not the running transaction (%d)" % (want, txid))
        if not install(cp, prof):
            raise composite.ProfileError("at most %d profiles (MaxChargingProfilesInstalled)"
                                         % cp.keys["MaxChargingProfilesInstalled"])
    except composite.ProfileError as e:
        L.warn("SetChargingProfile rejected: %s", e)
        return {"status": "Rejected"}
    L.info("profile %d installed (%s, stack level %d, connector %d)", prof[composite.ID],
           composite.PURPOSES[prof[composite.PURPOSE]], prof[composite.STACK], c)
    return {"status": "Accepted"}


def ClearChargingProfile(cp, p):
    """ClearChargingProfile.conf: Accepted when something was removed, else Unknown."""
    pu = p.get("chargingProfilePurpose")
    ps = load()
    n = composite.clear(ps, p.get("id"), p.get("connectorId"),
                        None if pu is None else composite.PURPOSES.index(pu), p.get("stackLevel"))
    if not n:
        return {"status": "Unknown"}
    save(ps)
    cp.limit_due = ticks_ms()
    L.info("%d profile(s) cleared", n)
    return {"status": "Accepted"}


def chargingProfile(cp, p):
    """RemoteStartTransaction's chargingProfile: its flat form, or None (Rejected) unless it is
    a TxProfile without a transactionId (OCPP 1.6 5.11)."""
    try:
        prof = _compact(cp, p, 1)
        if prof[composite.PURPOSE] != composite.TX or prof[composite.TXID] is not None:
            raise composite.ProfileError("the chargingProfile must be a TxProfile without a transactionId")
    except composite.ProfileError as e:
        L.warn("RemoteStartTransaction rejected: %s", e)
        return None
    return prof


def end_tx(cp):
    """The transaction ended: its TxProfiles go with it (OCPP 1.6 3.13.1)."""
    ps = load()
    if composite.clear(ps, purpose=composite.TX):
        save(ps)
    cp.smart_tx = False


def GetCompositeSchedule(cp, p):
    """GetCompositeSchedule.conf for connector 0 or 1 from now for `duration` s."""
    c = p["connectorId"]
    d = p["duration"]
    unit = p.get("chargingRateUnit", "A")
    if c not in (0, 1) or d < 1 or d > _MAX_DURATION:
        L.warn("GetCompositeSchedule rejected: connector %d, duration %d (1..%d s)", c, d, _MAX_DURATION)
        return {"status": "Rejected"}
    now = cp.now() // 1000
    txid, t0 = _tx(cp)
    v, ph, hw = _hw(cp)
    periods = composite.schedule(load(), now, d, c, txid, t0, v, ph, hw, unit, cp.keys["ChargingScheduleMaxPeriods"])
    return {"status": "Accepted", "connectorId": c, "scheduleStart": ocppj.iso_ms(now * 1000),
            "chargingSchedule": {"duration": d, "chargingRateUnit": unit, "chargingSchedulePeriod": periods}}


def refresh(cp):
    """Work out the limit now (cp.limit_a, A per phase) and when to do it again (cp.limit_due)."""
    v, ph, hw = _hw(cp)
    ps = load()
    wait = _RECHECK_S
    if ps:
        now = cp.now() // 1000
        txid, t0 = _tx(cp)
        if txid is None and composite.clear(ps, purpose=composite.TX):
            save(ps)    # TxProfiles of a transaction cut by a power loss: it is over
        lim, nxt = composite.limit_at(ps, now, 1, txid, t0, v, ph, hw)
        if nxt - now < wait:
            wait = nxt - now if nxt > now else 1
        cp.smart_tx = txid is not None and any(p[composite.PURPOSE] == composite.TX for p in ps)
    else:
        lim = hw
        cp.smart_tx = False
    lim = int(lim * 10 + 0.5) / 10
    if lim != cp.limit_a:
        L.info("limit %s A (next check in %d s)", lim, wait)
    cp.limit_a = lim
    cp.limit_due = ticks_add(ticks_ms(), wait * 1000)
