# OCPP 1.6 Smart Charging calls: SetChargingProfile, ClearChargingProfile, GetCompositeSchedule,
# the chargingProfile of a RemoteStartTransaction, and the read-only configuration keys. Imported
# by ocpp_calls for each such call, then dropped with what it imported (ocpp_calls.smart): between
# calls none of it takes heap. composite and smartlimit (and chargeprofile,
# the checks of a profile as received) are imported by the functions that need them, so a
# configuration key costs only this module.
import log
import ocppj
from compat import const

L = log.get("smart")
_MAX_DURATION = const(2678400)   # GetCompositeSchedule: at most 31 days ahead
_MAX_STACK = const(8)            # the configuration keys below
_MAX_PERIODS = const(24)
_MAX_PROFILES = const(8)
KEYS = (("ChargeProfileMaxStackLevel", "8"), ("ChargingScheduleAllowedChargingRateUnit", "Current,Power"),
        ("ChargingScheduleMaxPeriods", "24"), ("MaxChargingProfilesInstalled", "8"))
PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")   # as chargeprofile.PURPOSES
_TX = const(2)
# the calls' fields, as in ocpp_calls.CALLS
CALLS = {
    "SetChargingProfile": (("connectorId", "i", True, None), ("csChargingProfiles", "o", True, None)),
    "ClearChargingProfile": (("id", "i", False, None), ("connectorId", "i", False, None),
                             ("chargingProfilePurpose", "e", False, PURPOSES), ("stackLevel", "i", False, None)),
    "GetCompositeSchedule": (("connectorId", "i", True, None), ("duration", "i", True, None),
                             ("chargingRateUnit", "e", False, ("A", "W"))),
}


def handle(cp, action, p, mid):
    """A CALL that is not in ocpp_calls.CALLS: answered if it is a Smart Charging call (its payload
    checked against CALLS first: ocppj.FrameError), else None (NotImplemented)."""
    spec = CALLS.get(action)
    if spec is None:
        return None
    ocppj.check_payload(action, spec, p, mid)
    L.info("<- %s", action)
    if action[0] == "S":
        return _set(cp, p)
    if action[0] == "C":
        return _clear(cp, p)
    return _composite(cp, p)


def get_configuration(cp, keys, out):
    """GetConfiguration.conf `out` (ocpp_keys') with the Smart Charging keys put in: all of them
    when `keys` is empty (in name order), else those asked for, in the order asked."""
    known = out.get("configurationKey") or []
    unknown = out.pop("unknownKey", None) or []
    for k, v in KEYS:
        if not keys or k in unknown:
            known.append({"key": k, "readonly": True, "value": v})
            while k in unknown:
                unknown.remove(k)
    known.sort(key=(lambda d: keys.index(d["key"])) if keys else (lambda d: d["key"]))
    if known:
        out["configurationKey"] = known
    if unknown:
        out["unknownKey"] = unknown
    return out


def change(cp, k):
    """ChangeConfiguration of a key ocpp_keys does not know: Rejected for ours (read-only)."""
    for name, _ in KEYS:
        if name == k:
            return "Rejected"
    return "NotSupported"


def _compact(p, connector):
    import chargeprofile
    return chargeprofile.compact(p, connector, ocppj.parse_iso_ms, _MAX_STACK, _MAX_PERIODS)


def _set(cp, p):
    """SetChargingProfile.conf: Accepted or Rejected (the reason is logged)."""
    import composite
    import smartlimit
    c = p["connectorId"]
    try:
        if c not in (0, 1):
            raise ValueError("connectorId %d: the station has connectors 0 and 1" % c)
        prof = _compact(p["csChargingProfiles"], c)
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


def _clear(cp, p):
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


def _composite(cp, p):
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
