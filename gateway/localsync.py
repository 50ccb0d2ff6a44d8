"""Each station's Local Authorization List kept in step with the gateway's id-tag list (idtags.py).

Opt-in: a station is synced when its own switch says so (PUT /api/stations/<id>/local-list), or,
when it has none, when the gateway runs with Settings.local_list_sync (--local-list-sync). A station
without the LocalAuthListManagement profile is then never sent anything.

Per station the store keeps (local_lists): the listVersion the gateway last had Accepted by it,
the id-tag log version that list holds, its SendLocalListMaxLength, and the state of the last
sync. A sync:
  1. reads SendLocalListMaxLength and LocalAuthListMaxLength (GetConfiguration; a station that does
     not report the first is assumed to take DEFAULT_SEND_MAX entries per message),
  2. at boot, asks GetLocalListVersion: a version other than the one the gateway gave it means the
     station's list is not the gateway's (flashed, cleared, another central system): Full,
  3. sends the tags changed since the log version it holds (Differential), or the whole list
     (Full: its first message Full, the rest Differential), in messages of at most
     min(SendLocalListMaxLength, CAP_SEND) entries, each one listVersion higher,
  4. on VersionMismatch or Failed to a Differential, sends Full once; NotSupported (or a
     GetLocalListVersion of -1, or a CALLERROR NotImplemented/NotSupported) stops syncing that
     station: its state shows NotSupported until its switch is set again.
A change of the list while a station is being synced syncs it again when that run ends; one made
while a station was away reaches it when it reconnects (without a boot: resumed).
"""
import asyncio
import logging

from ocpp.exceptions import OCPPError
from ocpp.v16 import call as ocpp_call
from websockets.exceptions import ConnectionClosed

from .csms import StationDisconnected, utc_now
from .idtags import changed_since, list_version
from .logonce import LogOnce

log = logging.getLogger(__name__)
_ONCE = LogOnce(log)

DEFAULT_SEND_MAX = 100      # SendLocalListMaxLength assumed when the station does not report it
CAP_SEND = 250              # entries per SendLocalList at most, whatever the station says (~35 kB a frame)
MAX_IN_FLIGHT = 200         # stations synced at once (a change of the list reaches every synced station)
_FIELDS = ("sync", "list_version", "log_version", "max_length", "state", "detail", "updated")


class NotSupported(Exception):
    pass


class Refused(Exception):
    """The station answered a SendLocalList with something other than Accepted."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def _load(db):
    return {r[0]: dict(zip(_FIELDS, r[1:])) for r in db.execute(
        "SELECT station, %s FROM local_lists" % ", ".join(_FIELDS))}


def _save(db, sid, row):
    db.execute("INSERT INTO local_lists (station, %s) VALUES (?,%s) ON CONFLICT (station) DO UPDATE SET %s" % (
        ", ".join(_FIELDS), ",".join("?" * len(_FIELDS)), ", ".join("%s=excluded.%s" % (f, f) for f in _FIELDS)),
        (sid,) + tuple(row[f] for f in _FIELDS))


def _load_one(db, sid):
    r = db.execute("SELECT %s FROM local_lists WHERE station=?" % ", ".join(_FIELDS), (sid,)).fetchone()
    return dict(zip(_FIELDS, r)) if r is not None else None


def _full_list(db):
    return [r[0] for r in db.execute("SELECT tag FROM id_tags ORDER BY tag")]


class LocalSync:
    def __init__(self, gw):
        self.gw = gw
        self.rows = {}          # station -> its local_lists row (dict)
        self._tasks = {}        # station -> its running sync
        self._again = {}        # stations whose list changed while their sync ran -> check (a boot's GetLocalListVersion)
        self.runs = 0           # syncs finished (tests wait for it)
        self._done = asyncio.Event()
        self._gate = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def load(self):
        self.rows = await self.gw.store.run(_load)

    def enabled(self, sid):
        row = self.rows.get(sid)
        if row is not None and row["sync"] is not None:
            return bool(row["sync"])
        return bool(getattr(self.gw.settings, "local_list_sync", False))

    def _row(self, sid):
        row = self.rows.get(sid)
        if row is None:
            row = self.rows[sid] = dict.fromkeys(_FIELDS)
        return row

    def view(self, sid):
        row = self.rows.get(sid) or dict.fromkeys(_FIELDS)
        return {"sync": self.enabled(sid), "sync_set": None if row["sync"] is None else bool(row["sync"]),
                "list_version": row["list_version"], "in_sync": self.in_sync(sid),
                "max_length": row["max_length"], "state": row["state"], "detail": row["detail"],
                "updated": row["updated"], "running": sid in self._tasks}

    def in_sync(self, sid):
        row = self.rows.get(sid)
        return bool(row and row["state"] == "Accepted" and row["log_version"] == self.gw.idtags.version)

    async def set_sync(self, sid, on):
        """The station's own switch: True, False, or None (the gateway's --local-list-sync)."""
        row = self._row(sid)
        row["sync"] = None if on is None else int(bool(on))
        if row["state"] == "NotSupported" and on:
            row["state"] = row["detail"] = None     # try again: the operator says it has the profile now
        await self._store(sid, row)
        await self._tell(sid)
        if self.enabled(sid) and sid in self.gw.sessions:
            self.kick(sid, check=True)

    async def replaced(self, sid):
        """A SendLocalList not of the gateway's (the send-local-list command) was accepted: the
        station's list is no longer the one the gateway gave it; the next sync sends it Full."""
        row = self._row(sid)
        row.update(list_version=None, log_version=None, state="Replaced",
                   detail="a SendLocalList sent through the API replaced the gateway's list: the next sync is Full")
        await self._store(sid, row)
        await self._tell(sid)

    async def _tell(self, sid):
        """The operator changed the station's row here (its switch, a list of their own): the
        other gateway processes read it again, the one holding the station syncs by it."""
        if self.gw.cluster is not None:
            await self.gw.cluster.local_list_changed(sid)

    async def reread(self, sid):
        """Another process changed the station's row (_tell): read again. A switch turned on
        there syncs a station connected here at once (with a boot's version check), as set_sync
        does; a list of the operator's own (Replaced) waits for the next sync, as it does here."""
        was = (self.rows.get(sid) or {}).get("sync")
        row = await self.gw.store.run(_load_one, sid)
        if row is None:
            self.rows.pop(sid, None)
        else:
            self.rows[sid] = row
        if row and row["sync"] != was and self.enabled(sid) and sid in self.gw.sessions \
                and row["state"] != "NotSupported":
            self.kick(sid, check=True)

    async def _store(self, sid, row):
        row["updated"] = utc_now()
        await self.gw.store.run(_save, sid, dict(row))

    # --- triggers ---------------------------------------------------------------------
    def booted(self, sess):
        if self.enabled(sess.id):
            self.kick(sess.id, check=True)

    def resumed(self, sess):
        """The station reconnected without a boot (it kept its list): what changed while it was
        away reached it not (tags_changed syncs the connected stations), nor did a sync that
        failed then: the changes since go now, as tags_changed sends them."""
        sid = sess.id
        if self.enabled(sid) and (self.rows.get(sid) or {}).get("state") != "NotSupported" and not self.in_sync(sid):
            self.kick(sid)

    def tags_changed(self, _tags):
        for sid in list(self.gw.sessions):
            if self.enabled(sid) and (self.rows.get(sid) or {}).get("state") != "NotSupported":
                self.kick(sid)

    def kick(self, sid, check=False):
        if sid in self._tasks:     # once it is done, again; a boot's check is kept, not folded into a plain one
            self._again[sid] = self._again.get(sid, False) or check
            return
        t = asyncio.get_running_loop().create_task(self._run(sid, check))
        self._tasks[sid] = t

    def stop(self):
        for t in self._tasks.values():
            t.cancel()

    async def wait(self, runs):
        """Until `runs` syncs have finished in all (tests)."""
        while self.runs < runs:
            self._done.clear()
            await self._done.wait()

    async def _run(self, sid, check):
        try:
            while True:
                try:
                    async with self._gate:
                        await self.sync(sid, check)
                except Exception:
                    _ONCE.exception("station=%s local list sync failed", sid, key=("localsync", sid))
                if sid not in self._again:
                    break
                check = self._again.pop(sid)
        finally:
            self._tasks.pop(sid, None)
            self.runs += 1
            self._done.set()

    # --- one sync ---------------------------------------------------------------------
    async def sync(self, sid, check=False):
        sess = self.gw.sessions.get(sid)
        if sess is None or not self.enabled(sid):
            return
        row = self._row(sid)
        if row["state"] == "NotSupported":
            return
        try:
            await self._sync(sess, row, check)
        except NotSupported as e:
            row.update(state="NotSupported", detail=str(e))
            log.warning("station=%s does not support the local list (%s): not synced until its switch is set "
                        "again (PUT /api/stations/%s/local-list)", sid, e, sid)
        except Refused as e:
            row.update(state=e.status, detail="the station answered a Full SendLocalList with %s" % e.status)
            log.warning("station=%s local list: Full update answered %s", sid, e.status)
        except asyncio.TimeoutError:
            row.update(state="NoAnswer", detail="the station did not answer in time; tried again at its next "
                                                "boot or list change")
        except (StationDisconnected, ConnectionClosed):
            row.update(state="Disconnected", detail="the station disconnected during the sync; tried again at its "
                                                    "next boot")
        except OCPPError as e:
            row.update(state="Error", detail="the station answered with %s: %s" % (e.code, e.description))
        await self._store(sid, row)

    async def _sync(self, sess, row, check):
        sid = sess.id
        if row["max_length"] is None or check:
            try:
                conf = await sess.call(ocpp_call.GetConfiguration(
                    key=["SendLocalListMaxLength", "LocalAuthListMaxLength"]), suppress=False)
                have = {k.get("key"): k.get("value") for k in (conf.configuration_key or []) if isinstance(k, dict)}
            except OCPPError:       # no GetConfiguration: the defaults
                have = {}
            row["max_length"] = _positive(have.get("SendLocalListMaxLength")) or DEFAULT_SEND_MAX
            row["_capacity"] = _positive(have.get("LocalAuthListMaxLength"))
        full = row["list_version"] is None or row["log_version"] is None
        if check:
            got = (await self._call(sess, ocpp_call.GetLocalListVersion())).list_version
            if got == -1:
                raise NotSupported("GetLocalListVersion answered -1")
            if got != row["list_version"]:
                if row["list_version"] is not None:
                    log.info("station=%s local list version %s, the gateway gave it %s: Full update", sid, got,
                             row["list_version"])
                full = True
                row["list_version"] = max(got, 0)
        if not full:
            try:
                if await self._send(sess, row, full=False):
                    return
                log.info("station=%s local list version %s is older than the id-tag log keeps: Full update", sid,
                         row["list_version"])
            except Refused as e:
                if e.status not in ("VersionMismatch", "Failed"):
                    raise
                log.info("station=%s answered a Differential SendLocalList with %s: Full update", sid, e.status)
        await self._send(sess, row, full=True)

    async def _send(self, sess, row, full):
        """Send the list (full) or what changed; False when the log no longer holds what changed."""
        gw = self.gw
        if full:
            tags, target = await gw.store.run(lambda db: (_full_list(db), list_version(db)))
            cap = row.get("_capacity")
            if cap and len(tags) > cap:
                row.update(state="Failed", detail="the list has %d tags; the station holds at most %d "
                                                  "(LocalAuthListMaxLength)" % (len(tags), cap))
                return True
        else:
            tags, target = await gw.store.run(changed_since, row["log_version"])
            if tags is None:
                return False
            if not tags:
                row.update(state="Accepted", detail="in sync, list version %s" % row["list_version"])
                return True
        entries = []
        for t in tags:
            e = {"id_tag": t}
            if t in gw.id_tags:
                info = gw.idtags.info(t)
                e["id_tag_info"] = {"status": info["status"]}
                if "expiryDate" in info:
                    e["id_tag_info"]["expiry_date"] = info["expiryDate"]
                if "parentIdTag" in info:
                    e["id_tag_info"]["parent_id_tag"] = info["parentIdTag"]
            entries.append(e)     # a Differential entry without idTagInfo removes the tag
        n = max(1, min(row["max_length"] or DEFAULT_SEND_MAX, CAP_SEND))
        version = row["list_version"] or 0
        if full:    # its first message replaces the station's list: until the last is Accepted, no
            row["log_version"] = None       # log version is whole there (the next sync is Full again)
        chunks = [entries[i:i + n] for i in range(0, len(entries), n)] or [[]]
        for i, chunk in enumerate(chunks):
            version += 1
            kind = "Full" if full and i == 0 else "Differential"
            ans = await self._call(sess, ocpp_call.SendLocalList(list_version=version, update_type=kind,
                                                                 local_authorization_list=chunk))
            if ans.status == "NotSupported":
                raise NotSupported("SendLocalList answered NotSupported")
            if ans.status != "Accepted":
                if i > 0:       # part of the list went: the station's version is not ours any more
                    row["list_version"] = None
                raise Refused(ans.status)
            row["list_version"] = version
        row.update(log_version=target, state="Accepted",
                   detail="%s update of %d tag%s in %d message%s, list version %d" % (
                       "Full" if full else "Differential", len(entries), "" if len(entries) == 1 else "s",
                       len(chunks), "" if len(chunks) == 1 else "s", version))
        log.info("station=%s local list: %s", sess.id, row["detail"])
        return True

    @staticmethod
    async def _call(sess, payload):
        try:
            return await sess.call(payload, suppress=False)
        except OCPPError as e:
            if e.code in ("NotImplemented", "NotSupported"):
                raise NotSupported("%s answered %s" % (type(payload).__name__, e.code))
            raise


def _positive(v):
    try:
        n = int(v)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None
