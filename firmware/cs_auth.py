# Calls of the Local Auth List Management profile: SendLocalList, GetLocalListVersion. The list
# is on flash (authstore.py): a SendLocalList is merged into it record by record, never loaded
# whole. Imported for one call by ocpp_calls.handle and dropped after it (see there), with
# authstore, which the handlers import when they run (a group's import brings only itself).
import ocppj

DROP = ("authstore",)   # imported by the handlers; ocpp_calls.handle drops it with this module


def _entries(authstore, p):
    """[(idTag, record or None)] of the payload's localAuthorizationList; FrameError for an
    entry its schema does not allow. A Differential entry without idTagInfo removes the tag."""
    out = []
    for e in p.get("localAuthorizationList") or ():
        if not isinstance(e, dict) or not isinstance(e.get("idTag"), str):
            raise ocppj.FrameError(ocppj.TYPE_CONSTRAINT, "SendLocalList: an entry must be an object with an idTag")
        tag = e["idTag"]
        if not 0 < len(tag) <= 20:
            raise ocppj.FrameError(ocppj.PROPERTY_CONSTRAINT, "SendLocalList: idTag %r is not 1..20 characters" % tag[:24])
        info = e.get("idTagInfo")
        if info is None:
            out.append((tag, None))
            continue
        if not isinstance(info, dict) or info.get("status") not in authstore.STATUS:
            raise ocppj.FrameError(ocppj.PROPERTY_CONSTRAINT,
                                   "SendLocalList: idTagInfo of %s needs a status, one of %s" % (tag, ", ".join(authstore.STATUS)))
        parent = info.get("parentIdTag")
        if parent is not None and not (isinstance(parent, str) and 0 < len(parent) <= 20):
            raise ocppj.FrameError(ocppj.PROPERTY_CONSTRAINT, "SendLocalList: parentIdTag of %s is not 1..20 characters" % tag)
        exp = 0
        if info.get("expiryDate") is not None:
            try:
                exp = ocppj.parse_iso_ms(info["expiryDate"]) // 1000
            except (TypeError, ValueError):
                raise ocppj.FrameError(ocppj.PROPERTY_CONSTRAINT, "SendLocalList: expiryDate of %s is not an ISO 8601 date" % tag)
        out.append((tag, authstore.pack(tag, info["status"], exp, parent)))
    return out


def on_send_local_list(cp, p):
    if not cp.keys["LocalAuthListEnabled"]:
        return {"status": "NotSupported"}
    import authstore
    full = p["updateType"] == "Full"
    ver = p["listVersion"]
    changes = _entries(authstore, p)
    if len(changes) > cp.keys["SendLocalListMaxLength"] or ver < 1:
        return {"status": "Failed"}
    if not full and ver <= authstore.version():
        return {"status": "VersionMismatch"}
    if full and any(r is None for _t, r in changes):
        return {"status": "Failed"}   # a Full list entry needs its idTagInfo
    try:
        authstore.write(authstore.LIST, changes, ver, full, cp.keys["LocalAuthListMaxLength"])
    except (OSError, ValueError) as e:
        import log
        log.get("ocpp").warn("SendLocalList failed: %s", e)
        return {"status": "Failed"}
    return {"status": "Accepted"}


def on_get_local_list_version(cp, p):
    if not cp.keys["LocalAuthListEnabled"]:
        return {"listVersion": -1}
    import authstore
    return {"listVersion": authstore.version()}


# action: (handler, payload fields), as ocpp_calls.handle reads them
CALLS = {
    "SendLocalList": (on_send_local_list, (
        ("listVersion", "i", True, None), ("updateType", "e", True, ("Differential", "Full")),
        ("localAuthorizationList", "a", False, None))),
    "GetLocalListVersion": (on_get_local_list_version, ()),
}
