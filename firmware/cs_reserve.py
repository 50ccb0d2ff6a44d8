# Calls of the Reservation profile: ReserveNow, CancelReservation (OCPP 1.6 5.13, 5.2); and
# the reservation's record on flash. Imported for one call by ocpp_calls.handle and dropped
# after it, as at boot (a reservation on flash: load) and when one ends (end: used, by
# authz.admit; expired, by ChargePoint.tick).
#
# What stays resident is connector 1's one reservation, Connector.resv = [reservationId, idTag,
# parentIdTag or None, expiry in epoch seconds] (a list of four: ~100 bytes while it lasts),
# the check at a start (ocpp_tx._start: that tag, or a tag whose parentIdTag is the
# reservation's) and the expiry (ChargePoint.tick). On flash: reserve.json, that list as JSON
# (~60 bytes, written to a temporary file then renamed: a power cut leaves the old or the new).
#
# One connector and ReserveConnectorZeroSupported false (read-only): a reservation of
# connector 0 would only be one of connector 1 by another name, and a central system that
# wants one reserves connector 1; connector 0 (and any other but 1) is answered Rejected.
import json
import os

import log
import ocppj

L = log.get("ocpp")
FILE = "reserve.json"


def _save(r):
    """Keep reservation `r` on flash (None: remove it)."""
    if r is None:
        try:
            os.remove(FILE)
        except OSError:
            pass
        return
    tmp = FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(r, f)
    os.rename(tmp, FILE)


def load(cp):
    """At boot: the reservation on flash, unless it is unreadable or expired by the board's
    clock (a Pico W's clock is set by BootNotification: one that expired meanwhile ends then,
    by ChargePoint.tick)."""
    try:
        f = open(FILE)
    except OSError:
        return      # none
    try:
        with f:
            r = json.load(f)
        rid, tag, parent, exp = r
        if not (type(rid) is int and isinstance(tag, str) and type(exp) is int
                and (parent is None or isinstance(parent, str))):
            raise ValueError("not [reservationId, idTag, parentIdTag, expiry]")
    except (OSError, ValueError, TypeError) as e:
        L.warn("%s unreadable (%r): no reservation", FILE, e)
        _save(None)
        return
    if cp.now() // 1000 >= exp:
        _save(None)
        L.info("reservation %d expired while the station was off", rid)
        return
    cp.conn.resv = r
    L.info("reservation %d for %s kept across the reboot", rid, tag)


def end(cp, why):
    """The reservation ends: `why` it did (used, expired, cancelled)."""
    r = cp.conn.resv
    cp.conn.resv = None
    _save(None)
    if r:
        L.info("reservation %d %s", r[0], why)


def on_reserve_now(cp, p):
    c = p["connectorId"]
    rid = p["reservationId"]
    try:
        exp = ocppj.parse_iso_ms(p["expiryDate"]) // 1000
    except ValueError:
        raise ocppj.FrameError(ocppj.PROPERTY_CONSTRAINT, "ReserveNow: expiryDate %r is not an ISO 8601 date-time"
                               % p["expiryDate"][:40])
    if c != 1 and not (c == 0 and cp.keys["ReserveConnectorZeroSupported"]):
        return {"status": "Rejected"}
    if exp <= cp.now() // 1000:
        L.warn("ReserveNow %d: expiryDate %s has passed", rid, p["expiryDate"][:40])
        return {"status": "Rejected"}
    conn = cp.conn
    s = conn.status(1)[0]
    if s == "Faulted" or s == "Unavailable":
        return {"status": s}
    r = conn.resv
    if s != "Available" and not (s == "Reserved" and r[0] == rid):   # the same id: replaced
        return {"status": "Occupied"}
    r = [rid, p["idTag"], p.get("parentIdTag"), exp]
    try:
        _save(r)
    except OSError as e:
        L.warn("ReserveNow %d: %s not written (%r)", rid, FILE, e)
        return {"status": "Rejected"}
    conn.resv = r
    L.info("reservation %d for %s until %s", rid, r[1], p["expiryDate"][:40])
    return {"status": "Accepted"}


def on_cancel_reservation(cp, p):
    r = cp.conn.resv
    if r is None or r[0] != p["reservationId"]:
        return {"status": "Rejected"}
    end(cp, "cancelled")
    return {"status": "Accepted"}


# action: (handler, payload fields), as ocpp_calls.handle reads them
CALLS = {
    "ReserveNow": (on_reserve_now, (
        ("connectorId", "i", True, None), ("expiryDate", "s", True, 40), ("idTag", "s", True, 20),
        ("parentIdTag", "s", False, 20), ("reservationId", "i", True, None))),
    "CancelReservation": (on_cancel_reservation, (("reservationId", "i", True, None),)),
}
