"""Commands to stations: the API's command names, their OCPP calls, and `send_command`.

`POST /api/stations/<id>/<command>` ends here: the body becomes the OCPP call's payload,
checked against the ocpp package's schema before it is sent, and the station's answer (or
why there is none) comes back as a `CommandError` with the HTTP status to give.
"""
import asyncio
import logging
import math
from decimal import Decimal

from ocpp.exceptions import OCPPError
from ocpp.v16 import call as ocpp_call
from websockets.exceptions import ConnectionClosed

from .auth import authorization_key_bytes
from .csms import REFUSED_ANSWER, StationDisconnected
from .logonce import LogOnce
from .profiles import profile_kwargs
from .validate import _Fail, result_payload, validator

log = logging.getLogger(__name__)
_ONCE = LogOnce(log)


class CommandError(Exception):
    def __init__(self, status, message, extra=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}


# API command -> (ocpp call class, body -> kwargs)
COMMANDS = {
    "remote-start": (ocpp_call.RemoteStartTransaction,
                     lambda b: {"id_tag": b["id_tag"], "connector_id": b.get("connector_id")}),
    "remote-stop": (ocpp_call.RemoteStopTransaction, lambda b: {"transaction_id": int(b["transaction_id"])}),
    "reset": (ocpp_call.Reset, lambda b: {"type": b.get("type", "Soft")}),
    "change-availability": (ocpp_call.ChangeAvailability,
                            lambda b: {"connector_id": int(b.get("connector_id", 0)), "type": b["type"]}),
    "get-configuration": (ocpp_call.GetConfiguration, lambda b: {"key": b.get("key")}),
    "change-configuration": (ocpp_call.ChangeConfiguration,
                             lambda b: {"key": b["key"], "value": str(b["value"])}),
    "trigger-message": (ocpp_call.TriggerMessage,
                        lambda b: {"requested_message": b["requested_message"],
                                   "connector_id": b.get("connector_id")}),
    "unlock-connector": (ocpp_call.UnlockConnector, lambda b: {"connector_id": int(b.get("connector_id", 1))}),
    # Local Auth List Management, Reservation and DataTransfer (issue 14). reserve-now and
    # cancel-reservation go through reservations.py (the gateway gives the reservation id and
    # keeps the answers): their row here is for the route table
    "send-local-list": (ocpp_call.SendLocalList,
                        lambda b: {"list_version": int(b["list_version"]), "update_type": b["update_type"],
                                   "local_authorization_list": b.get("local_authorization_list")}),
    "get-local-list-version": (ocpp_call.GetLocalListVersion, lambda b: {}),
    "clear-cache": (ocpp_call.ClearCache, lambda b: {}),
    "reserve-now": (ocpp_call.ReserveNow, None),
    "cancel-reservation": (ocpp_call.CancelReservation, lambda b: {"reservation_id": int(b["reservation_id"])}),
    "data-transfer": (ocpp_call.DataTransfer,
                      lambda b: {"vendor_id": b["vendor_id"], "message_id": b.get("message_id"), "data": b.get("data")}),
    # Smart Charging (issue 13): the bodies are checked field by field first (profiles.py)
    "set-charging-profile": (ocpp_call.SetChargingProfile, profile_kwargs),
    "clear-charging-profile": (ocpp_call.ClearChargingProfile,
                               lambda b: {"id": b.get("id"), "connector_id": b.get("connector_id"),
                                          "charging_profile_purpose": b.get("charging_profile_purpose"),
                                          "stack_level": b.get("stack_level")}),
    "get-composite-schedule": (ocpp_call.GetCompositeSchedule,
                               lambda b: {"connector_id": int(b["connector_id"]), "duration": int(b["duration"]),
                                          "charging_rate_unit": b.get("charging_rate_unit")}),
}


async def send_command(sessions, sid, name, body):
    """The station's answer payload to command `name` with `body`; CommandError otherwise.
    `sessions`: station id -> its open StationSession."""
    if name not in COMMANDS:
        raise CommandError(404, "unknown command %r: one of %s" % (name, ", ".join(sorted(COMMANDS))))
    sess = sessions.get(sid)
    if sess is None:
        raise CommandError(409, "station %s is not connected" % sid)
    cls, build = COMMANDS[name]
    if build is None:
        raise CommandError(400, "%s is sent by POST /api/stations/%s/%s, which gives the reservation its id"
                           % (cls.__name__, sid, name))
    try:
        payload = cls(**{k: v for k, v in build(body).items() if v is not None})
    except (KeyError, TypeError, ValueError) as e:
        raise CommandError(400, "bad body for %s: %s %s" % (name, type(e).__name__, e))
    try:
        validator(cls.__name__)(result_payload(payload))
    except _Fail as e:
        raise CommandError(400, "bad body for %s: %s" % (name, e.message))
    new_key = None
    if name == "change-configuration" and is_authorization_key(payload.key):
        # the station's password from now on, if it accepts it: checked before it is sent
        try:
            new_key = authorization_key_bytes(payload.value)
        except ValueError as e:
            raise CommandError(400, "bad body for %s: %s" % (name, e))
        changing = sess.gw.key_changes
        if sid in changing:
            # two keys in flight: whichever answer came last, the gateway could store the other
            raise CommandError(409, "an AuthorizationKey change for station %s is still waiting for its "
                                    "answer: send the next one when it is answered" % sid)
        changing.add(sid)
        try:
            return await _call(sess, sid, name, cls, payload, new_key)
        finally:
            changing.discard(sid)
    return await _call(sess, sid, name, cls, payload, None)


async def send_call(sessions, sid, payload):
    """The station's answer payload to an OCPP call built by the gateway itself (UpdateFirmware,
    GetDiagnostics: the location is the gateway's, see rollouts.py and otaweb.py), checked
    against the schema before it is sent; CommandError otherwise, as send_command."""
    sess = sessions.get(sid)
    if sess is None:
        raise CommandError(409, "station %s is not connected" % sid)
    cls = type(payload)
    try:
        validator(cls.__name__)(result_payload(payload))
    except _Fail as e:
        raise CommandError(400, "bad %s: %s" % (cls.__name__, e.message))
    return await _call(sess, sid, cls.__name__, cls, payload, None)


# calls the gateway builds itself (the reservation id, the list's version are the gateway's) that
# another gateway process may be asked to send for it (cluster.py: "call:<Action>")
BUILT_CALLS = {c.__name__: c for c in (ocpp_call.ReserveNow, ocpp_call.CancelReservation,
                                        ocpp_call.SetChargingProfile, ocpp_call.ClearChargingProfile)}


async def send_built(sessions, sid, action, kwargs):
    """send_call of BUILT_CALLS[action](**kwargs): what another process built, sent from here."""
    cls = BUILT_CALLS.get(action)
    if cls is None:
        raise CommandError(400, "%s is not a call one gateway process sends for another" % action[:40])
    try:
        payload = cls(**kwargs)
    except TypeError as e:
        raise CommandError(400, "bad %s: %s" % (action, e))
    return await send_call(sessions, sid, payload)


def is_authorization_key(key):
    """OCPP configuration keys are CiString: AuthorizationKey in any case."""
    return isinstance(key, str) and key.lower() == "authorizationkey"


async def _call(sess, sid, name, cls, payload, new_key):
    log.info("station=%s command %s", sid, cls.__name__)
    try:
        result = await sess.call(payload, suppress=False)
    except asyncio.TimeoutError:
        raise CommandError(504, "station %s did not answer %s in time" % (sid, cls.__name__))
    except StationDisconnected as e:
        if not e.sent:
            raise CommandError(409, "station %s is not connected" % sid)
        if new_key is not None:
            # it may have stored the key before it could answer (our firmware does): the new key
            # is let in beside the old one, which stays valid until the new one is used
            await sess.gw.learn_key(sid, new_key)
            raise CommandError(502, "station %s disconnected after receiving the new AuthorizationKey, before "
                                    "answering: both its old and the new key are accepted until it connects "
                                    "with the new one" % sid, {"disconnected": True})
        # a Reset, for one, is often followed by the station dropping the link before its answer
        # arrives: say so at once rather than wait for the response timeout
        raise CommandError(502, "station %s disconnected after receiving %s, before answering it%s" % (
            sid, cls.__name__, " (a reset station reconnects and sends a BootNotification when it is up "
                               "again)" if name == "reset" else ""), {"disconnected": True})
    except ConnectionClosed:
        raise CommandError(409, "station %s disconnected" % sid)
    except OCPPError as e:  # the station's CALLERROR, or its answer failed the schema
        if e.details == REFUSED_ANSWER:     # its answer was not valid OCPP-J text (csms._refuse_surrogate)
            raise CommandError(502, "station %s answered %s with a frame the gateway refused: %s; the "
                               "station must send UTF-8 text" % (sid, cls.__name__, e.description),
                               {"code": e.code, "details": e.details})
        raise CommandError(502, "station %s answered %s with %s: %s" % (
            sid, cls.__name__, e.code, e.description), {"code": e.code, "details": e.details})
    out = _plain(result_payload(result))
    if new_key is not None and out.get("status") in ("Accepted", "RebootRequired"):
        await sess.gw.learn_key(sid, new_key)     # the answer stays the station's (its schema)
    return out


def _plain(v):
    """An answer as JSON has it: the ocpp package reads decimal numbers (a schedule's limits) as
    Decimal, which the API's JSON does not write; they become floats."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, Decimal):
        return float(v)
    return v


# configuration keys that are one station's own: never sent to every station at once
PER_STATION_KEYS = frozenset(("AuthorizationKey",))
MAX_IN_FLIGHT = 200     # ChangeConfiguration calls to different stations at once (configure_stations)


async def configure_stations(sessions, sids, key, value, send=None):
    """ChangeConfiguration `key`=`value` to each station of `sids` (the connected ones; the others
    are reported as not connected), at most MAX_IN_FLIGHT at once. `send(sid, name, body)`: how
    a command reaches a station (default: send_command over `sessions`; a cluster's gateway
    passes its own, which reaches stations connected to its other processes too). Returns
    {"key", "value", "stations": {id: {"status": answer} or {"error": why}}, "counts": {...}}."""
    if not isinstance(key, str) or not 1 <= len(key) <= 50:
        raise CommandError(400, "key must be a configuration key name of 1..50 characters")
    if any(key.lower() == k.lower() for k in PER_STATION_KEYS):
        raise CommandError(400, "%s is one station's own: send it to that station with POST "
                                "/api/stations/<id>/change-configuration" % key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or len(str(value)) > 500:
        raise CommandError(400, "value must be a string or a number of at most 500 characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise CommandError(400, "value must be a finite number, not %s" % value)
    if not key.isprintable() or not str(value).isprintable():
        raise CommandError(400, "key and value must be printable text (no control characters)")
    value = str(value)
    body = {"key": key, "value": value}
    if send is None:
        async def send(sid, name, b):
            return await send_command(sessions, sid, name, b)
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    out = {}

    async def one(sid):
        if sid not in sessions:
            out[sid] = {"error": "not connected"}
            return
        async with gate:
            try:
                out[sid] = {"status": (await send(sid, "change-configuration", body))["status"]}
            except CommandError as e:
                out[sid] = {"error": e.message}

    await asyncio.gather(*(one(sid) for sid in sids))
    counts = {}
    for r in out.values():
        k = r.get("status") or ("not connected" if r["error"] == "not connected" else "failed")
        counts[k] = counts.get(k, 0) + 1
    log.info("configuration %s=%s sent to every station: %s", key, value,
             ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items())) or "no stations")
    return {"key": key, "value": value, "stations": {sid: out[sid] for sid in sorted(out)}, "counts": counts}


async def apply_at_boot(sess, wanted):
    """After a station's BootNotification was Accepted: each configuration key of `wanted`
    ({key: value}) whose value on the station differs is changed (GetConfiguration, then
    ChangeConfiguration for those that differ). A key the station does not report is left
    alone (it does not have it); no answer, a CALLERROR or a refusal is logged, never raised.
    Returns {key: the station's answer, or why none}."""
    sid = sess.id
    out = {}
    try:
        res = await sess.call(ocpp_call.GetConfiguration(key=sorted(wanted)), suppress=False)
        have = {k.get("key"): k.get("value") for k in (res.configuration_key or []) if isinstance(k, dict)}
        for key, want in sorted(wanted.items()):
            if key not in have:
                out[key] = "not reported"
                continue
            if have[key] == str(want):
                out[key] = "unchanged"
                continue
            r = await sess.call(ocpp_call.ChangeConfiguration(key=key, value=str(want)), suppress=False)
            out[key] = r.status
            log.info("station=%s %s was %s: set to %s at boot: %s", sid, key, have[key], want, r.status)
        log.info("station=%s configuration checked at boot: %s", sid,
                 ", ".join("%s %s" % (k, v) for k, v in sorted(out.items())))
    except asyncio.TimeoutError:
        _ONCE.warning("station=%s did not answer the configuration check at boot in time", sid,
                      key=("boot-config", "timeout"))
    except (StationDisconnected, ConnectionClosed):
        log.info("station=%s disconnected during the configuration check at boot", sid)
    except OCPPError as e:      # a station without GetConfiguration: nothing to compare with
        # a fleet of such stations: one line a minute with the count, not one per boot
        _ONCE.log(logging.INFO, "station=%s answered the configuration check at boot with %s: left as it is",
                  sid, e.code, key=("boot-config", e.code))
    return out
