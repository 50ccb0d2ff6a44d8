# Calls on the configuration keys: GetConfiguration, ChangeConfiguration (ocpp_keys holds the keys).
# Imported for one call by ocpp_calls.handle and dropped after it (see there).
import log
import ocppj
from compat import ticks_add, ticks_ms

L = log.get("ocpp")


# Smart Charging's read-only keys (ocpp_smart's limits: _MAX_STACK, _MAX_PERIODS, _MAX_PROFILES),
# here rather than in ocpp_keys.SPEC, which is held for good
SMART_KEYS = (("ChargeProfileMaxStackLevel", "8"), ("ChargingScheduleAllowedChargingRateUnit", "Current,Power"),
              ("ChargingScheduleMaxPeriods", "24"), ("MaxChargingProfilesInstalled", "8"))


def on_get_configuration(cp, p):
    keys = p.get("key")
    n = cp.keys["GetConfigurationMaxKeys"]
    if keys and len(keys) > n:
        raise ocppj.FrameError(ocppj.OCCURENCE_CONSTRAINT, "at most %d keys (GetConfigurationMaxKeys)" % n)
    out = cp.keys.get_configuration(keys)
    # the Smart Charging keys put in: all of them when `keys` is empty (in name order), else
    # those asked for, in the order asked
    known = out.get("configurationKey") or []
    unknown = out.pop("unknownKey", None) or []
    for k, v in SMART_KEYS:
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


def on_change_configuration(cp, p):
    k = p["key"]
    res = cp.keys.change(k, p["value"])
    if res == "NotSupported":
        for name, _v in SMART_KEYS:
            if name == k:       # Smart Charging's keys are read-only
                res = "Rejected"
    L.info("ChangeConfiguration %s: %s", k[:50], res)  # not the value: it may be a key
    if res == "Accepted":
        if k == "MeterValueSampleInterval":
            cp.mv_due = ticks_add(ticks_ms(), cp.keys[k] * 1000)
        elif k == "HeartbeatInterval":
            cp.hb_due = ticks_add(ticks_ms(), cp.keys[k] * 1000)
        elif k == "WebSocketPingInterval":
            cp.link.ping_due = ticks_add(ticks_ms(), cp.keys[k] * 1000)
    return {"status": res}


# action: (handler, payload fields), as ocpp_calls.handle reads them
CALLS = {
    "GetConfiguration": (on_get_configuration, (("key", "l", False, 50),)),
    "ChangeConfiguration": (on_change_configuration, (("key", "s", True, 50), ("value", "s", True, 500))),
}
