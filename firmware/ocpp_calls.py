# Calls from the central system: one on_<action>(cp, payload) each, answered at once (the main
# loop acts on what they ask: cp.req_start, req_stop, req_reset, triggers), and the table of
# the actions the station accepts, with the constraints of each one's OCPP 1.6 JSON schema that
# ocppj.check_payload holds the payload to before its handler runs. Anything not in the table
# is answered CALLERROR NotImplemented.
#
# A new call = one handler and one row in CALLS (docs/ocpp.md shows an example).
import sys

import log
import ocppj
from compat import ticks_ms, ticks_add

L = log.get("ocpp")


def on_remote_start_transaction(cp, p):
    if cp.req_start or not cp.conn.free() or p.get("connectorId", 1) != 1:
        return {"status": "Rejected"}
    prof = p.get("chargingProfile")
    if prof is not None:   # a TxProfile for the transaction it starts: checked by ocpp_smart
        prof = smart("chargingProfile", cp, prof)
        if prof is None:
            return {"status": "Rejected"}
    cp.req_start = p["idTag"]
    cp.req_profile = prof
    return {"status": "Accepted"}


_SMART_MODULES = ("ocpp_smart", "chargeprofile", "smartlimit", "composite")


def smart(fn, cp, *args):
    import ocpp_smart   # in the heap only while it is used, with what it imported
    try:
        return getattr(ocpp_smart, fn)(cp, *args)
    finally:
        for m in _SMART_MODULES:
            sys.modules.pop(m, None)


def on_remote_stop_transaction(cp, p):
    tx = cp.conn.tx
    if tx and cp.journal.txid(tx["ref"]) == p["transactionId"]:
        cp.req_stop = "Remote"
        return {"status": "Accepted"}
    return {"status": "Rejected"}


def on_reset(cp, p):
    cp.req_reset = p["type"]
    return {"status": "Accepted"}


def on_change_availability(cp, p):
    if p["connectorId"] not in (0, 1):
        return {"status": "Rejected"}
    want = p["type"] == "Operative"
    if cp.conn.tx and not want:
        cp.avail_pending = want
        return {"status": "Scheduled"}
    cp.set_available(want)
    return {"status": "Accepted"}


def on_get_configuration(cp, p):
    keys = p.get("key")
    n = cp.keys["GetConfigurationMaxKeys"]
    if keys and len(keys) > n:
        raise ocppj.FrameError(ocppj.OCCURENCE_CONSTRAINT, "at most %d keys (GetConfigurationMaxKeys)" % n)
    return smart("get_configuration", cp, keys, cp.keys.get_configuration(keys))   # with its keys


def on_change_configuration(cp, p):
    k = p["key"]
    res = cp.keys.change(k, p["value"])
    if res == "NotSupported":   # Smart Charging's keys are read-only
        res = smart("change", cp, k)
    L.info("ChangeConfiguration %s: %s", k[:50], res)  # not the value: it may be a key
    if res == "Accepted":
        if k == "MeterValueSampleInterval":
            cp.mv_due = ticks_add(ticks_ms(), cp.keys[k] * 1000)
        elif k == "HeartbeatInterval":
            cp.hb_due = ticks_add(ticks_ms(), cp.keys[k] * 1000)
        elif k == "WebSocketPingInterval":
            cp.link.ping_due = ticks_add(ticks_ms(), cp.keys[k] * 1000)
    return {"status": res}


def on_trigger_message(cp, p):
    m = p["requestedMessage"]
    if p.get("connectorId", 1) not in (0, 1):
        return {"status": "Rejected"}
    if m[0] in "DF":   # Diagnostics/FirmwareStatusNotification: the status now (ota.py, diag.py)
        cp.triggers.append((m, {"status": getattr(cp, "fw_status", {}).get(m, "Idle")}))
        return {"status": "Accepted"}
    cp.triggers.append((m, p.get("connectorId")))
    return {"status": "Accepted"}


def on_clear_cache(cp, p):
    return {"status": "Accepted"}  # no authorization cache: nothing to clear


def on_unlock_connector(cp, p):
    return {"status": "NotSupported"}  # the station has a fixed cable, no lock


def on_update_firmware(cp, p):
    import ota    # the update's code is in the heap only while an update runs
    ota.start(cp, p)
    return {}


def on_get_diagnostics(cp, p):
    import diag
    name = diag.start(cp, p)
    if name is None:
        sys.modules.pop("diag", None)
        return {}     # no file will be uploaded
    return {"fileName": name}


def on_data_transfer(cp, p):
    return {"status": "UnknownVendorId"}


# action: (handler, payload fields); Smart Charging's calls are in ocpp_smart, with their fields.
# A field: (name, kind, required, arg); kind "s" a string of
# at most `arg` characters, "i" an integer, "e" one of the strings in `arg`, "l" a list of
# strings of at most `arg` characters, "o" an object.
_TRIGGERS = ("BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
             "Heartbeat", "MeterValues", "StatusNotification")
CALLS = {
    "RemoteStartTransaction": (on_remote_start_transaction, (
        ("connectorId", "i", False, None), ("idTag", "s", True, 20), ("chargingProfile", "o", False, None))),
    "RemoteStopTransaction": (on_remote_stop_transaction, (("transactionId", "i", True, None),)),
    "Reset": (on_reset, (("type", "e", True, ("Hard", "Soft")),)),
    "ChangeAvailability": (on_change_availability, (
        ("connectorId", "i", True, None), ("type", "e", True, ("Inoperative", "Operative")))),
    "GetConfiguration": (on_get_configuration, (("key", "l", False, 50),)),
    "ChangeConfiguration": (on_change_configuration, (("key", "s", True, 50), ("value", "s", True, 500))),
    "TriggerMessage": (on_trigger_message, (
        ("requestedMessage", "e", True, _TRIGGERS), ("connectorId", "i", False, None))),
    "ClearCache": (on_clear_cache, ()),
    "UnlockConnector": (on_unlock_connector, (("connectorId", "i", True, None),)),
    "UpdateFirmware": (on_update_firmware, (
        ("location", "s", True, 512), ("retries", "i", False, None), ("retrieveDate", "s", True, 40),
        ("retryInterval", "i", False, None))),
    "GetDiagnostics": (on_get_diagnostics, (
        ("location", "s", True, 512), ("retries", "i", False, None), ("retryInterval", "i", False, None),
        ("startTime", "s", False, 40), ("stopTime", "s", False, 40))),
    "DataTransfer": (on_data_transfer, (
        ("vendorId", "s", True, 255), ("messageId", "s", False, 50), ("data", "s", False, None))),
}


def handle(cp, action, payload, mid):
    """The answer to a CALL (payload), or None for an action the station does not take.
    Raises ocppj.FrameError for a payload its schema does not allow."""
    row = CALLS.get(action)
    if row is None:   # Smart Charging's calls are in ocpp_smart; anything else: not implemented
        if action in ("SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule"):
            return smart("handle", cp, action, payload, mid)
        return None
    ocppj.check_payload(action, row[1], payload, mid)
    L.info("<- %s", action)
    return row[0](cp, payload)
