# Calls that start and stop a transaction: RemoteStartTransaction, RemoteStopTransaction.
# Imported for one call by ocpp_calls.handle and dropped after it (see there).


def on_remote_start_transaction(cp, p):
    if cp.req_start or not cp.conn.free() or p.get("connectorId", 1) != 1:
        return {"status": "Rejected"}
    cp.req_start = p["idTag"]
    return {"status": "Accepted"}


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
