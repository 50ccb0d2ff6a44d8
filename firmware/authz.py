# Whether an idTag may start (or stop) a transaction: the Local Authorization List, the
# authorization cache (authstore.py, on flash) and Authorize, as OCPP 1.6 (3.5) orders them with
# LocalPreAuthorize, LocalAuthorizeOffline, AllowOfflineTxForUnknownId and
# AuthorizationCacheEnabled. Imported per start or tap by ocpp_tx / chargepoint and dropped
# after it (DROP), with authstore.
#
#   online:  a tag Accepted by the list or the cache starts at once with LocalPreAuthorize;
#            otherwise Authorize decides (its answer cached); a failed Authorize (no answer,
#            CALLERROR) decides as offline
#   offline: a tag in the list or the cache: its status there, with LocalAuthorizeOffline
#            (without it: not authorized); the station's own tag (ocpp.id_tag, its button)
#            counts as Accepted in the list; an unknown tag: Accepted only with
#            AllowOfflineTxForUnknownId
import sys

import authstore
import log
import ocpp_tx
from ocpp_link import CallError, CallTimeout

L = log.get("ocpp")
DROP = ("authz", "authstore")


def local(cp, tag):
    """(status, parentIdTag) of `tag` from the list, else the cache; None if in neither."""
    now_s = cp.now() // 1000
    keys = cp.keys
    r = None
    if keys["LocalAuthListEnabled"]:
        r = authstore.lookup(tag, authstore.LIST, now_s)
    if r is None and keys["AuthorizationCacheEnabled"]:
        r = authstore.lookup(tag, authstore.CACHE, now_s)
    return r


async def authorize(cp, tag):
    """(status, parentIdTag or None) for idTag `tag`."""
    keys = cp.keys
    loc = local(cp, tag)
    if cp.online():
        if loc is not None and loc[0] == "Accepted" and keys["LocalPreAuthorize"]:
            L.info("idTag %s accepted locally", tag)
            return loc
        try:
            res = await cp.link.call("Authorize", {"idTag": tag})
            return authstore.remember(tag, res.get("idTagInfo"), keys)
        except (CallError, CallTimeout) as e:
            L.warn("Authorize failed (%s): deciding offline", e)
    if tag == cp.cfg["id_tag"] and loc is None:
        loc = ("Accepted", None)
    if loc is not None:
        if keys["LocalAuthorizeOffline"]:
            return loc
        return "Invalid", None
    if keys["AllowOfflineTxForUnknownId"]:
        L.info("idTag %s unknown: accepted offline (AllowOfflineTxForUnknownId)", tag)
        return "Accepted", None
    return "Invalid", None


async def admit(cp, tag, check, r):
    """(status, parentIdTag) of a start for `tag`: authorized if `check`. On a connector reserved
    (r: Connector.resv) for another tag, only a tag whose parentIdTag is the reservation's (from
    the list, the cache or Authorize) may start: any other is "Reserved" (not Accepted). A start
    Accepted on a reserved connector uses the reservation: it ends here."""
    other = r is not None and tag != r[1]
    st, parent = "Accepted", None
    if other and r[2] is None:    # no group: nothing to ask
        st = "Reserved"
    elif check or other:          # for another tag, its parentIdTag is needed
        st, parent = await authorize(cp, tag)
        if st == "Accepted" and other and parent != r[2]:
            st = "Reserved"
    if st == "Reserved":
        L.warn("connector reserved for %s (reservation %d): %s may not use it", r[1], r[0], tag)
    elif st == "Accepted" and r is not None:
        import cs_reserve
        cs_reserve.end(cp, "used")
        sys.modules.pop("cs_reserve", None)
    return st, parent


async def tapped(cp):
    """A card (cp.tap): it starts a transaction, or stops the running one if it is its tag or of
    its group (same parentIdTag); refused: the LED blinks, nothing changes."""
    tag = cp.tap
    cp.tap = None
    tx = cp.conn.tx
    if tx is None:
        if cp.conn.free():
            await ocpp_tx.start(cp, tag, True)
        else:
            L.warn("card %s: the connector is %s", tag, cp.conn.status(1)[0])
    elif await stops(cp, tag, tx):
        cp.req_stop = "Local"
    else:
        L.warn("card %s does not stop the transaction of %s", tag, tx["tag"])
        cp.st.blink = ocpp_tx.REFUSED


async def stops(cp, tag, tx):
    """Whether a tap of `tag` stops transaction `tx`: the same tag, or one whose parentIdTag is
    the transaction's (from the list, the cache or Authorize)."""
    if tag == tx["tag"]:
        return True
    if not tx.get("p"):
        return False
    st, parent = await authorize(cp, tag)
    return parent == tx["p"] and st in ("Accepted", "ConcurrentTx")
