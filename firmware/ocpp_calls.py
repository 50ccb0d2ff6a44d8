# Calls from the central system: which module takes each action, and the dispatch. A module
# cs_<group> holds one on_<action>(cp, payload) handler per action it takes, answered at once
# (the main loop acts on what they ask: cp.req_start, req_stop, req_reset, triggers), and its
# CALLS table: the constraints of each action's OCPP 1.6 JSON schema that check_payload
# holds the payload to before its handler runs. Anything not listed here is answered CALLERROR
# NotImplemented.
#
# Only the group a call needs is imported, and dropped after it with the modules its handlers
# imported (the group's DROP, if it has one): all the handlers and their
# tables in one module took 9,216 bytes of heap on the 64-bit port while a call ran, at boot
# beside every other task (a GetConfiguration from our own gateway then met a MemoryError at
# 192K); the largest group, cs_admin, takes about a third of that.
#
# A new call = one handler and one row in its group's CALLS, and its action here (docs/ocpp.md).
import sys

import log
import ocppj

L = log.get("ocpp")

WHERE = {
    "RemoteStartTransaction": "cs_tx", "RemoteStopTransaction": "cs_tx",
    "GetConfiguration": "cs_config", "ChangeConfiguration": "cs_config",
    "Reset": "cs_admin", "ChangeAvailability": "cs_admin", "TriggerMessage": "cs_admin",
    "ClearCache": "cs_admin", "UnlockConnector": "cs_admin", "DataTransfer": "cs_admin",
    "UpdateFirmware": "cs_fwmgmt", "GetDiagnostics": "cs_fwmgmt",
    "SendLocalList": "cs_auth", "GetLocalListVersion": "cs_auth",
    "ReserveNow": "cs_reserve", "CancelReservation": "cs_reserve",
    "SetChargingProfile": "ocpp_smart", "ClearChargingProfile": "ocpp_smart", "GetCompositeSchedule": "ocpp_smart",
}


def row(action):
    """(handler, payload fields) of `action`, its module imported (and left for the caller to
    drop: sys.modules.pop(WHERE[action])); None for an action the station does not take."""
    name = WHERE.get(action)
    if name is None:
        return None
    return __import__(name).CALLS[action]


def check_payload(action, spec, payload, mid=ocppj.UNKNOWN_ID):
    """Raise FrameError (ProtocolError / TypeConstraintViolation / PropertyConstraintViolation /
    FormationViolation) if `payload` breaks `spec`, the constraints of the OCPP 1.6 schema of
    incoming `action` we rely on: its fields, as in a cs_<group> module's CALLS."""
    for k in payload:
        for f in spec:
            if f[0] == k:
                break
        else:
            raise ocppj.FrameError(ocppj.FORMATION_VIOLATION, "%s: unexpected property %r" % (action, k), mid)
    for name, kind, required, arg in spec:
        if name not in payload:
            if required:
                raise ocppj.FrameError(ocppj.PROTOCOL_ERROR, "%s: %s is required" % (action, name), mid)
            continue
        v = payload[name]
        if kind == "i":
            if type(v) is not int:
                raise ocppj.FrameError(ocppj.TYPE_CONSTRAINT, "%s: %s must be an integer" % (action, name), mid)
        elif kind == "o":
            if not isinstance(v, dict):
                raise ocppj.FrameError(ocppj.TYPE_CONSTRAINT, "%s: %s must be an object" % (action, name), mid)
        elif kind == "a":   # an array of objects (their fields checked by the handler)
            if not isinstance(v, list):
                raise ocppj.FrameError(ocppj.TYPE_CONSTRAINT, "%s: %s must be an array" % (action, name), mid)
        elif kind == "l":
            if not isinstance(v, list):
                raise ocppj.FrameError(ocppj.TYPE_CONSTRAINT, "%s: %s must be an array" % (action, name), mid)
            for s in v:
                if not isinstance(s, str):
                    raise ocppj.FrameError(ocppj.TYPE_CONSTRAINT, "%s: %s must hold strings" % (action, name), mid)
                if len(s) > arg:
                    raise ocppj.FrameError(ocppj.PROPERTY_CONSTRAINT, "%s: %s entry longer than %d" % (
                        action, name, arg), mid)
        else:
            if not isinstance(v, str):
                raise ocppj.FrameError(ocppj.TYPE_CONSTRAINT, "%s: %s must be a string" % (action, name), mid)
            if kind == "e":
                if v not in arg:
                    raise ocppj.FrameError(ocppj.PROPERTY_CONSTRAINT, "%s: %s %r is not one of %s" % (
                        action, name, v, ", ".join(arg)), mid)
            elif arg is not None and len(v) > arg:
                raise ocppj.FrameError(ocppj.PROPERTY_CONSTRAINT, "%s: %s is longer than %d" % (action, name, arg), mid)


def handle(cp, action, payload, mid):
    """The answer to a CALL (payload), or None for an action the station does not take.
    Raises ocppj.FrameError for a payload its schema does not allow."""
    try:
        r = row(action)
        if r is None:
            return None
        check_payload(action, r[1], payload, mid)
        L.info("<- %s", action)
        return r[0](cp, payload)
    finally:
        m = sys.modules.pop(WHERE.get(action), None)
        for name in getattr(m, "DROP", ()):   # what the group's handlers imported
            sys.modules.pop(name, None)
