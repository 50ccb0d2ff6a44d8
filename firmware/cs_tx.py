# Calls that start and stop a transaction: RemoteStartTransaction, RemoteStopTransaction.
# Imported for one call by ocpp_calls.handle and dropped after it (see there).
import sys


def on_remote_start_transaction(cp, p):
    if cp.req_start or not cp.conn.free() or p.get("connectorId", 1) != 1:
        return {"status": "Rejected"}
    r = cp.conn.resv
    if r and p["idTag"] != r[1] and not _of_group(cp, p["idTag"], r[2]):
        return {"status": "Rejected"}   # reserved for another tag
    prof = p.get("chargingProfile")
    if prof is not None:   # a TxProfile for the transaction it starts: checked by ocpp_smart
        import ocpp_smart
        try:
            prof = ocpp_smart.chargingProfile(cp, prof)
        finally:
            for m in ("ocpp_smart",) + ocpp_smart.DROP:
                sys.modules.pop(m, None)
        if prof is None:
            return {"status": "Rejected"}
    cp.req_start = p["idTag"]
    cp.req_profile = prof
    return {"status": "Accepted"}


def _of_group(cp, tag, parent):
    """Whether `tag`'s parentIdTag is `parent` in the list or the cache (the answer cannot
    wait for an Authorize; the start authorizes it again, ocpp_tx._start)."""
    if parent is None:
        return False
    import authz
    try:
        r = authz.local(cp, tag)
    finally:
        for m in authz.DROP:
            sys.modules.pop(m, None)
    return r is not None and r[1] == parent


def on_remote_stop_transaction(cp, p):
    tx = cp.conn.tx
    if tx and cp.journal.txid(tx["ref"]) == p["transactionId"]:
        cp.req_stop = "Remote"
        return {"status": "Accepted"}
    return {"status": "Rejected"}


# action: (handler, payload fields), as ocpp_calls.handle reads them
CALLS = {
    "RemoteStartTransaction": (on_remote_start_transaction, (
        ("connectorId", "i", False, None), ("idTag", "s", True, 20), ("chargingProfile", "o", False, None))),
    "RemoteStopTransaction": (on_remote_stop_transaction, (("transactionId", "i", True, None),)),
}
