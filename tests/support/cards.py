"""The firmware's RFID reader in tests: a station config with the reader on, a card held to the
unix board's reader, a Local Authorization List entry."""
from support.central import station_config


def rfid_config(url, **kw):
    """station_config (support.central) with charger.rfid on: a 16 A single-phase charger."""
    cfg = station_config(url, **kw)
    cfg["charger"] = {"max_current_a": 16, "supply_v": 230, "phases": 1, "rfid": True}
    return cfg


async def tap(st, uid):
    """Hold card `uid` to the reader: the board reads rfid.txt (and removes it) within 0.5 s."""
    tmp = st.flash / "rfid.tmp"
    tmp.write_text(uid)
    tmp.replace(st.flash / "rfid.txt")
    await st.aexpect("[rfid] I: card %s" % uid)


def entry(tag, status="Accepted", parent=None):
    """A SendLocalList entry for `tag` (idTagInfo with `status`, and `parent` as parentIdTag)."""
    info = {"status": status}
    if parent:
        info["parentIdTag"] = parent
    return {"idTag": tag, "idTagInfo": info}
