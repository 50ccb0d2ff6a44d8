# OCPP 1.6 Smart Charging calls: SetChargingProfile, ClearChargingProfile, GetCompositeSchedule
# and the chargingProfile of a RemoteStartTransaction (their payloads checked by ocpp_calls
# against CALLS first; its read-only configuration keys are rows of ocpp_keys._TABLE). The call group of
# these three (ocpp_calls.WHERE): imported for a call and dropped after it, with what its
# handlers imported (DROP): between calls none of it takes heap. composite and smartlimit (and
# chargeprofile, the checks of a profile as received, dropped before they are imported) are
# imported by the functions that need them. One module rather than a cs_smart in front of it:
# the two took 3.6 KB more while a SetChargingProfile was answered.
import sys

import log
import ocppj
from compat import const

L = log.get("smart")
_MAX_DURATION = const(2678400)   # GetCompositeSchedule: at most 31 days ahead
_MAX_STACK = const(8)            # the configuration keys (ocpp_keys._TABLE says the same)
_MAX_PERIODS = const(24)
_MAX_PROFILES = const(8)
PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")   # as chargeprofile.PURPOSES
_TX = const(2)


def _compact(p, connector):
    """The profile's flat form (chargeprofile.compact), chargeprofile dropped before the caller
    imports composite and smartlimit: the three at once took 9 KB (64-bit port) beside the
    call's other modules."""
    import chargeprofile
    try:
        return chargeprofile.compact(p, connector, ocppj.parse_iso_ms, _MAX_STACK, _MAX_PERIODS)
    finally:
        sys.modules.pop("chargeprofile", None)


DROP = ("chargeprofile", "smartlimit", "composite")


def set_profile(cp, p):
    """SetChargingProfile.conf: Accepted or Rejected (the reason is logged)."""
    c = p["connectorId"]
    try:
        if c not in (0, 1):
            raise ValueError("connectorId %d: the station has connectors 0 and 1" % c)
        prof = _compact(p["csChargingProfiles"], c)
        import composite
        import smartlimit
        if prof[composite.PURPOSE] == composite.TX:
            txid = smartlimit.tx(cp)[0]
            if txid is None:
                raise ValueError("a TxProfile needs a running transaction, and there is none")
            want = prof[composite.TXID]
            if want is not None and want != txid:
                raise ValueError("transactionId %d is not the running transaction (%d)" % (want, txid))
        ps = smartlimit.load()
        composite.replace(ps, prof)
        if len(ps) > _MAX_PROFILES:
            raise ValueError("at most %d profiles (MaxChargingProfilesInstalled)" % _MAX_PROFILES)
    except ValueError as e:   # chargeprofile.ProfileError, or ours
        L.warn("SetChargingProfile rejected: %s", e)
        return {"status": "Rejected"}
    smartlimit.save(cp, ps)
    L.info("profile %d installed (%s, stack level %d, connector %d)", prof[composite.ID],
           PURPOSES[prof[composite.PURPOSE]], prof[composite.STACK], c)
    return {"status": "Accepted"}


def clear_profile(cp, p):
    """ClearChargingProfile.conf: Accepted when something was removed, else Unknown."""
    import composite
    import smartlimit
    pu = p.get("chargingProfilePurpose")
    ps = smartlimit.load()
    n = composite.clear(ps, p.get("id"), p.get("connectorId"), None if pu is None else PURPOSES.index(pu),
                        p.get("stackLevel"))
    if not n:
        return {"status": "Unknown"}
    smartlimit.save(cp, ps)
    L.info("%d profile(s) cleared", n)
    return {"status": "Accepted"}


def chargingProfile(cp, p):
    """RemoteStartTransaction's chargingProfile: its flat form, or None (Rejected) unless it is
    a TxProfile without a transactionId (OCPP 1.6 5.11)."""
    try:
        prof = _compact(p, 1)
        if prof[2] != _TX or prof[11] is not None:   # composite.PURPOSE, TXID
            raise ValueError("the chargingProfile must be a TxProfile without a transactionId")
    except ValueError as e:
        L.warn("RemoteStartTransaction rejected: %s", e)
        return None
    return prof


def composite_schedule(cp, p):
    """GetCompositeSchedule.conf for connector 0 or 1 from now for `duration` s."""
    import composite
    import smartlimit
    c = p["connectorId"]
    d = p["duration"]
    unit = p.get("chargingRateUnit", "A")
    if c not in (0, 1) or d < 1 or d > _MAX_DURATION:
        L.warn("GetCompositeSchedule rejected: connector %d, duration %d (1..%d s)", c, d, _MAX_DURATION)
        return {"status": "Rejected"}
    now = cp.now() // 1000
    txid, t0 = smartlimit.tx(cp)
    v, ph, mx = smartlimit.hw(cp)
    periods = composite.schedule(smartlimit.load(), now, d, c, txid, t0, v, ph, mx, unit, _MAX_PERIODS)
    return {"status": "Accepted", "connectorId": c, "scheduleStart": ocppj.iso_ms(now * 1000),
            "chargingSchedule": {"duration": d, "chargingRateUnit": unit, "chargingSchedulePeriod": periods}}


# action: (handler, payload fields), as ocpp_calls.handle reads them
CALLS = {
    "SetChargingProfile": (set_profile, (
        ("connectorId", "i", True, None), ("csChargingProfiles", "o", True, None))),
    "ClearChargingProfile": (clear_profile, (
        ("id", "i", False, None), ("connectorId", "i", False, None),
        ("chargingProfilePurpose", "e", False, PURPOSES), ("stackLevel", "i", False, None))),
    "GetCompositeSchedule": (composite_schedule, (
        ("connectorId", "i", True, None), ("duration", "i", True, None),
        ("chargingRateUnit", "e", False, ("A", "W")))),
}
