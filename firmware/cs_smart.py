# Calls of the Smart Charging profile: SetChargingProfile, ClearChargingProfile,
# GetCompositeSchedule. Imported for one call by ocpp_calls.handle and dropped after it (see
# there); the work is in ocpp_smart (with chargeprofile, composite and smartlimit: 12.8 KB on the
# 64-bit port), imported by smart() for the call and dropped with them.
import sys

_MODULES = ("ocpp_smart", "chargeprofile", "smartlimit", "composite")
_PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")   # as chargeprofile.PURPOSES


def smart(fn, cp, p):
    """ocpp_smart.<fn>(cp, p), its modules in the heap only meanwhile (also cs_tx's
    RemoteStartTransaction with a chargingProfile)."""
    import ocpp_smart
    try:
        return getattr(ocpp_smart, fn)(cp, p)
    finally:
        for m in _MODULES:
            sys.modules.pop(m, None)


def on_set_charging_profile(cp, p):
    return smart("set_profile", cp, p)


def on_clear_charging_profile(cp, p):
    return smart("clear_profile", cp, p)


def on_get_composite_schedule(cp, p):
    return smart("composite_schedule", cp, p)


# action: (handler, payload fields), as ocpp_calls.handle reads them
CALLS = {
    "SetChargingProfile": (on_set_charging_profile, (
        ("connectorId", "i", True, None), ("csChargingProfiles", "o", True, None))),
    "ClearChargingProfile": (on_clear_charging_profile, (
        ("id", "i", False, None), ("connectorId", "i", False, None),
        ("chargingProfilePurpose", "e", False, _PURPOSES), ("stackLevel", "i", False, None))),
    "GetCompositeSchedule": (on_get_composite_schedule, (
        ("connectorId", "i", True, None), ("duration", "i", True, None),
        ("chargingRateUnit", "e", False, ("A", "W")))),
}
