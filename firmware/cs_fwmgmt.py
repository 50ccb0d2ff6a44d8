# Calls of the Firmware Management profile: UpdateFirmware, GetDiagnostics (the work
# itself is in ota.py and diag.py, imported while it runs).
# Imported for one call by ocpp_calls.handle and dropped after it (see there).
import sys


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


# action: (handler, payload fields), as ocpp_calls.handle reads them
CALLS = {
    "UpdateFirmware": (on_update_firmware, (
        ("location", "s", True, 512), ("retries", "i", False, None), ("retrieveDate", "s", True, 40),
        ("retryInterval", "i", False, None))),
    "GetDiagnostics": (on_get_diagnostics, (
        ("location", "s", True, 512), ("retries", "i", False, None), ("retryInterval", "i", False, None),
        ("startTime", "s", False, 40), ("stopTime", "s", False, 40))),
}
