"""Reservations: ReserveNow and CancelReservation sent by the gateway, kept with the station's answers.

The gateway gives each reservation its id (one more than the largest it gave), the parent id tag
comes from the id-tag list, and the row is stored before the call goes (status Sending) so that
an id is never given twice, then with the station's answer (Accepted, Faulted, Occupied,
Rejected, Unavailable), or NoAnswer when none came. A StartTransaction carrying reservationId
links the transaction to it (both rows). Shown with a state: active, expired (its expiry date
passed unused), used, cancelled, refused (not Accepted), no answer.
"""
import logging
from datetime import datetime, timedelta, timezone

from ocpp.v16 import call as ocpp_call

from .commands import CommandError
from .csms import utc_now
from .idtags import LOCK_RESERVATIONS, check_expiry, check_tag, next_key

log = logging.getLogger(__name__)

MAX_AHEAD_DAYS = 30         # a reservation's expiry date is at most this far ahead
MAX_CONNECTOR = 1000
MAX_LISTED = 200
_COLS = ("id", "station", "connector", "id_tag", "parent", "expiry", "status", "created", "cancelled",
         "cancel_status", "transaction_id")


def _insert(db, sid, connector, tag, parent, expiry):
    rid = next_key(db, LOCK_RESERVATIONS, "SELECT COALESCE(MAX(id), 0) FROM reservations")
    db.execute("INSERT INTO reservations (id, station, connector, id_tag, parent, expiry, status, created) "
               "VALUES (?,?,?,?,?,?,?,?)", (rid, sid, connector, tag, parent, expiry, "Sending", utc_now()))
    return rid


def _set(db, rid, kw):
    db.execute("UPDATE reservations SET %s WHERE id=?" % ", ".join("%s=?" % k for k in sorted(kw)),
               tuple(kw[k] for k in sorted(kw)) + (rid,))


def _get(db, sid, rid):
    r = db.execute("SELECT %s FROM reservations WHERE id=? AND station=?" % ", ".join(_COLS), (rid, sid)).fetchone()
    return dict(zip(_COLS, r)) if r is not None else None


def _list(db, sid):
    return [dict(zip(_COLS, r)) for r in db.execute(
        "SELECT %s FROM reservations WHERE station=? ORDER BY id DESC LIMIT %d" % (", ".join(_COLS), MAX_LISTED),
        (sid,))]


def _link(db, sid, rid, tid, connector, tag, parent, now):
    """Transaction `tid` (on `connector`, for `tag` whose parent is `parent`) started against
    reservation `rid` of station `sid`: None when linked, else why not. Only a reservation the
    station accepted, not cancelled, not used, not expired, for that connector (or connector 0:
    any) and that tag or one with the same parent, as OCPP 1.6 5.13 lets a station start it."""
    r = db.execute("SELECT connector, id_tag, parent, expiry, status, cancelled, transaction_id FROM reservations "
                   "WHERE id=? AND station=?", (rid, sid)).fetchone()
    if r is None:
        return "the gateway did not make it for this station"
    rc, rtag, rparent, expiry, status, cancelled, used = r
    if status != "Accepted" or cancelled or used is not None:
        return "it is %s" % ("used by transaction %d" % used if used is not None else
                             "cancelled" if cancelled else "not accepted by the station (%s)" % status)
    if expiry <= now:
        return "it expired at %s" % expiry
    if rc not in (0, connector):
        return "it is for connector %d, not %d" % (rc, connector)
    if tag != rtag and not (rparent and parent == rparent):
        return "it is for id tag %s%s, not %s" % (rtag, " (parent %s)" % rparent if rparent else "", tag)
    db.execute("UPDATE reservations SET transaction_id=? WHERE id=? AND station=?", (tid, rid, sid))
    return None


def reservation_of(db, sid, tids):
    """{transaction id: the reservation it was started against} for transactions `tids` of `sid`."""
    if not tids:
        return {}
    return {r[0]: r[1] for r in db.execute(
        "SELECT transaction_id, id FROM reservations WHERE station=? AND transaction_id IN (%s)"
        % ",".join("?" * len(tids)), (sid,) + tuple(tids))}


def view(r, now=None):
    now = now or utc_now()
    if r["transaction_id"] is not None:
        state = "used"
    elif r["cancelled"]:
        state = "cancelled"
    elif r["status"] == "Sending":
        state = "sending"
    elif r["status"] == "NoAnswer":
        state = "no answer"
    elif r["status"] != "Accepted":
        state = "refused"
    elif r["expiry"] <= now:
        state = "expired"
    else:
        state = "active"
    return {"id": r["id"], "connector_id": r["connector"], "id_tag": r["id_tag"], "parent_id_tag": r["parent"],
            "expiry_date": r["expiry"], "status": r["status"], "state": state, "created": r["created"],
            "cancelled": r["cancelled"], "cancel_status": r["cancel_status"], "transaction_id": r["transaction_id"]}


def check_reservation(body, now=None):
    """(connector, tag, expiry) of a reservation body; ValueError naming the wrong field."""
    c = body.get("connector_id")
    if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= MAX_CONNECTOR:
        raise ValueError("connector_id must be an integer 0..%d (0: any connector, if the station takes "
                         "ReserveConnectorZeroSupported)" % MAX_CONNECTOR)
    tag = check_tag(body.get("id_tag"))
    if body.get("expiry_date") is None:
        raise ValueError("expiry_date is missing: when the reservation ends (ISO 8601, e.g. 2027-01-31T18:00:00Z)")
    expiry = check_expiry(body.get("expiry_date"))
    now = now or datetime.now(timezone.utc)
    if expiry <= now.strftime("%Y-%m-%dT%H:%M:%SZ"):
        raise ValueError("expiry_date %s is not in the future" % expiry)
    if expiry > (now + timedelta(days=MAX_AHEAD_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ"):
        raise ValueError("expiry_date %s is more than %d days ahead" % (expiry, MAX_AHEAD_DAYS))
    extra = set(body) - {"connector_id", "id_tag", "expiry_date"}
    if extra:
        raise ValueError("%s is not a field of a reservation (connector_id, id_tag, expiry_date)" % sorted(extra)[0])
    return c, tag, expiry


def check_id(rid, name="reservation_id"):
    """`rid` if it is a reservation id (an integer 1..2^31-1, the store's and OCPP's), else
    ValueError saying so (a larger one was SQLite's OverflowError: a 500)."""
    if isinstance(rid, bool) or not isinstance(rid, int) or not 1 <= rid <= 2 ** 31 - 1:
        raise ValueError("%s must be a reservation's id, an integer between 1 and %d" % (name, 2 ** 31 - 1))
    return rid


class Reservations:
    def __init__(self, gw):
        self.gw = gw

    async def reserve(self, sid, body):
        """(the reservation's view, the station's answer); ValueError for a wrong body,
        CommandError when the station is not connected, refuses the tag, or does not answer."""
        connector, tag, expiry = check_reservation(body)
        gw = self.gw
        info = gw.idtags.info(tag)
        if info["status"] != "Accepted":
            raise CommandError(409, "id tag %s is %s in this gateway's id-tag list: a reservation for it could not "
                                    "be used; give a tag of the list that is Accepted (GET /api/id-tags)" % (
                                        tag, info["status"] if tag in gw.id_tags else "not"),
                               {"id_tag_status": info["status"]})
        if sid not in gw.connected:     # to this process or another
            raise CommandError(409, "station %s is not connected" % sid)
        parent = info.get("parentIdTag")
        rid = await gw.store.run(_insert, sid, connector, tag, parent, expiry)
        payload = ocpp_call.ReserveNow(connector_id=connector, expiry_date=expiry, id_tag=tag, reservation_id=rid,
                                       parent_id_tag=parent)
        try:
            ans = await gw.call_station(sid, payload)
        except CommandError:
            await gw.store.run(_set, rid, {"status": "NoAnswer"})
            raise
        await gw.store.run(_set, rid, {"status": ans["status"]})
        log.info("station=%s reservation %d (connector %d, tag %s, until %s): %s", sid, rid, connector, tag, expiry,
                 ans["status"])
        return view(await gw.store.run(_get, sid, rid)), ans

    async def cancel(self, sid, rid):
        """(the reservation's view or None for one the gateway does not know, the station's answer)."""
        check_id(rid)
        ans = await self.gw.call_station(sid, ocpp_call.CancelReservation(reservation_id=rid))
        row = await self.gw.store.run(_get, sid, rid)
        if row is None:
            return None, ans
        kw = {"cancel_status": ans["status"]}
        if ans["status"] == "Accepted":
            kw["cancelled"] = utc_now()
        await self.gw.store.run(_set, rid, kw)
        log.info("station=%s reservation %d cancelled: %s", sid, rid, ans["status"])
        return view(await self.gw.store.run(_get, sid, rid)), ans

    async def get(self, sid, rid):
        row = await self.gw.store.run(_get, sid, rid)
        return view(row) if row else None

    async def list(self, sid):
        now = utc_now()
        return [view(r, now) for r in await self.gw.store.run(_list, sid)]

    async def started(self, sid, rid, tid, connector, tag):
        """A StartTransaction of `sid` named reservation `rid` and was given transaction `tid`."""
        parent = self.gw.idtags.info(tag).get("parentIdTag")
        why = await self.gw.store.run(_link, sid, rid, tid, connector, tag, parent, utc_now())
        if why is not None:
            log.warning("station=%s started transaction %d for reservation %d: not linked, %s", sid, tid, rid, why)
