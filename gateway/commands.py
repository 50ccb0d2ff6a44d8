"""Commands to stations: the API's command names, their OCPP calls, and `send_command`.

`POST /api/stations/<id>/<command>` ends here: the body becomes the OCPP call's payload,
checked against the ocpp package's schema before it is sent, and the station's answer (or
why there is none) comes back as a `CommandError` with the HTTP status to give.
"""
import asyncio
import logging

from ocpp.exceptions import OCPPError
from ocpp.v16 import call as ocpp_call
from websockets.exceptions import ConnectionClosed

from .auth import authorization_key_bytes
from .csms import StationDisconnected
from .validate import _Fail, result_payload, validator

log = logging.getLogger(__name__)


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
    try:
        payload = cls(**{k: v for k, v in build(body).items() if v is not None})
    except (KeyError, TypeError, ValueError) as e:
        raise CommandError(400, "bad body for %s: %s %s" % (name, type(e).__name__, e))
    try:
        validator(cls.__name__)(result_payload(payload))
    except _Fail as e:
        raise CommandError(400, "bad body for %s: %s" % (name, e.message))
    new_key = None
    if name == "change-configuration" and payload.key == "AuthorizationKey":
        # the station's password from now on, if it accepts it: checked before it is sent
        try:
            new_key = authorization_key_bytes(payload.value)
        except ValueError as e:
            raise CommandError(400, "bad body for %s: %s" % (name, e))
    log.info("station=%s command %s", sid, cls.__name__)
    try:
        result = await sess.call(payload, suppress=False)
    except asyncio.TimeoutError:
        raise CommandError(504, "station %s did not answer %s in time" % (sid, cls.__name__))
    except StationDisconnected as e:
        if not e.sent:
            raise CommandError(409, "station %s is not connected" % sid)
        # a Reset, for one, is often followed by the station dropping the link before its answer
        # arrives: say so at once rather than wait for the response timeout
        raise CommandError(502, "station %s disconnected after receiving %s, before answering it%s" % (
            sid, cls.__name__, " (a reset station reconnects and sends a BootNotification when it is up "
                               "again)" if name == "reset" else ""), {"disconnected": True})
    except ConnectionClosed:
        raise CommandError(409, "station %s disconnected" % sid)
    except OCPPError as e:  # the station's CALLERROR, or its answer failed the schema
        raise CommandError(502, "station %s answered %s with %s: %s" % (
            sid, cls.__name__, e.code, e.description), {"code": e.code, "details": e.details})
    out = result_payload(result)
    if new_key is not None and out.get("status") in ("Accepted", "RebootRequired"):
        await sess.gw.learn_key(sid, new_key)     # the answer stays the station's (its schema)
    return out
