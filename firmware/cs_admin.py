# Calls that run the station: Reset, ChangeAvailability, TriggerMessage, ClearCache,
# UnlockConnector, DataTransfer.
# Imported for one call by ocpp_calls.handle and dropped after it (see there).
import os


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
    try:   # the authorization cache (authstore.CACHE, written by authz.py)
        os.remove("auth_cache.bin")
    except OSError:
        pass    # none yet
    return {"status": "Accepted"}


def on_unlock_connector(cp, p):
    return {"status": "NotSupported"}  # the station has a fixed cable, no lock


def on_data_transfer(cp, p):
    return {"status": "UnknownVendorId"}


_TRIGGERS = ("BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
             "Heartbeat", "MeterValues", "StatusNotification")

# action: (handler, payload fields), as ocpp_calls.handle reads them
CALLS = {
    "Reset": (on_reset, (("type", "e", True, ("Hard", "Soft")),)),
    "ChangeAvailability": (on_change_availability, (
        ("connectorId", "i", True, None), ("type", "e", True, ("Inoperative", "Operative")))),
    "TriggerMessage": (on_trigger_message, (
        ("requestedMessage", "e", True, _TRIGGERS), ("connectorId", "i", False, None))),
    "ClearCache": (on_clear_cache, ()),
    "UnlockConnector": (on_unlock_connector, (("connectorId", "i", True, None),)),
    "DataTransfer": (on_data_transfer, (
        ("vendorId", "s", True, 255), ("messageId", "s", False, 50), ("data", "s", False, None))),
}
