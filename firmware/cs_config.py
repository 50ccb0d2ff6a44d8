# Calls on the configuration keys: GetConfiguration, ChangeConfiguration (ocpp_keys holds the keys).
# Imported for one call by ocpp_calls.handle and dropped after it (see there).
import log
import ocppj
from compat import ticks_add, ticks_ms

L = log.get("ocpp")


def on_get_configuration(cp, p):
    keys = p.get("key")
    n = cp.keys["GetConfigurationMaxKeys"]
    if keys and len(keys) > n:
        raise ocppj.FrameError(ocppj.OCCURENCE_CONSTRAINT, "at most %d keys (GetConfigurationMaxKeys)" % n)
    return cp.keys.get_configuration(keys)


def on_change_configuration(cp, p):
    k = p["key"]
    res = cp.keys.change(k, p["value"])
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
