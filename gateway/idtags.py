"""The id-tag list: what Authorize, StartTransaction and StopTransaction are answered with, and what
the stations' local lists are kept in step with (localsync.py).

A tag (OCPP idToken, 1..20 characters) has a status (Accepted, Blocked, Expired, Invalid), an
optional parent id tag (a group: the tags of one parent stop each other's transactions) and an
optional expiry date, after which it is answered Expired. While the list is empty every tag is
Accepted (the gateway's behaviour before the list existed: docs/gateway.md).

Every change is one row of id_tag_log (version increasing): a station's local list is brought
up to date by sending the tags changed after the version it holds (SendLocalList Differential).
The list is held in memory (`gw.id_tags`: tag -> status, `meta`: tag -> (parent, expiry)) and
written through the store; the SQL of the list is in this module.
"""
import csv
import io
import logging

from .csms import utc_now
from .readings import _ts

log = logging.getLogger(__name__)

STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")
MAX_TAG = 20                # OCPP 1.6 IdToken: CiString20
MAX_TAGS = 100000           # tags in the list at most (each in memory: ~200 bytes)
MAX_CSV_BYTES = 1024 * 1024      # (the gateway's --max-body is 1 MiB by default too)
MAX_CSV_ROWS = 20000        # rows of one CSV import
MAX_PAGE = 1000             # tags per page of GET /api/id-tags
# id_tag_log rows kept: past MAX_LOG the oldest go, down to KEEP_LOG; a station whose list is
# older than what is left is sent the whole list (localsync: Full) instead of what changed
MAX_LOG = 200000
KEEP_LOG = 100000
CSV_COLUMNS = ("id_tag", "status", "parent_id_tag", "expiry_date")


def check_tag(v, name="id_tag"):
    """`v` if it is an id tag (1..20 printable characters), else ValueError saying so."""
    if not isinstance(v, str) or not 1 <= len(v) <= MAX_TAG:
        raise ValueError("%s must be a string of 1..%d characters" % (name, MAX_TAG))
    if not v.isprintable() or v != v.strip():
        raise ValueError("%s %r must be printable text without leading or trailing spaces" % (name, v))
    return v


def check_status(v):
    if v not in STATUSES:
        raise ValueError("status must be Accepted, Blocked, Expired or Invalid")
    return v


def check_expiry(v, name="expiry_date"):
    """An ISO 8601 date-time as 'YYYY-MM-DDTHH:MM:SSZ' (None stays None), else ValueError."""
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > 40:
        raise ValueError("%s must be an ISO 8601 date-time such as 2027-01-31T23:59:59Z" % name)
    try:
        return _ts(v)
    except ValueError:
        raise ValueError("%s %r is not an ISO 8601 date-time (e.g. 2027-01-31T23:59:59Z)" % (name, v[:40]))


def check_entry(b, where=""):
    """(tag, status, parent, expiry) from a body / CSV row dict; ValueError naming the field."""
    tag = check_tag(b.get("id_tag"))
    status = check_status(b.get("status") or "Accepted")
    parent = b.get("parent_id_tag") or None
    if parent is not None:
        check_tag(parent, "parent_id_tag")
        if parent == tag:
            raise ValueError("parent_id_tag %s is the tag itself: leave it out, or name the group's tag" % parent)
    expiry = check_expiry(b.get("expiry_date") or None)
    return tag, status, parent, expiry


def parse_csv(raw):
    """[(tag, status, parent, expiry)] from CSV bytes with the header id_tag,status[,parent_id_tag
    [,expiry_date]]; ValueError listing the wrong lines by number (at most 20 listed): one bad
    line and nothing is imported."""
    if len(raw) > MAX_CSV_BYTES:
        raise ValueError("the CSV is %d bytes; at most %d: split it" % (len(raw), MAX_CSV_BYTES))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError("the CSV is not UTF-8 (byte %d)" % e.start)
    if "\x00" in text:
        raise ValueError("the CSV holds a NUL character (U+0000)")
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        head = next(rows)
    except (StopIteration, csv.Error):
        raise ValueError("the CSV is empty: its first line must be the header %s" % ",".join(CSV_COLUMNS))
    head = [h.strip() for h in head]
    if head[:2] != ["id_tag", "status"] or any(h not in CSV_COLUMNS for h in head) or len(set(head)) != len(head):
        raise ValueError("line 1: the header must be id_tag,status[,parent_id_tag][,expiry_date], not %s"
                         % ",".join(head)[:120])
    out, bad, seen = [], [], {}
    try:
        for row in rows:
            line = rows.line_num
            if not row or row == [""]:
                continue
            if len(out) + len(bad) >= MAX_CSV_ROWS:
                raise ValueError("the CSV has more than %d rows: split it" % MAX_CSV_ROWS)
            if len(row) != len(head):
                bad.append("line %d: %d fields, the header has %d" % (line, len(row), len(head)))
                continue
            try:
                e = check_entry(dict(zip(head, (_undefused(c.strip()) for c in row))))
            except ValueError as err:
                bad.append("line %d: %s" % (line, err))
                continue
            if e[0] in seen:
                bad.append("line %d: id tag %s again (first on line %d)" % (line, e[0], seen[e[0]]))
                continue
            seen[e[0]] = line
            out.append(e)
    except csv.Error as err:
        bad.append("line %d: %s" % (rows.line_num, err))
    if bad:
        more = " (and %d more)" % (len(bad) - 20) if len(bad) > 20 else ""
        raise ValueError("nothing imported: %d wrong line%s: %s%s" % (
            len(bad), "" if len(bad) == 1 else "s", "; ".join(bad[:20]), more))
    return out


def to_csv(rows):
    """CSV text of [(tag, status, parent, expiry)] with the import's header. A tag a spreadsheet
    would take for a formula (=, +, -, @ first, as export.cell defuses them) is written with a
    leading ', which the import takes off again."""
    f = io.StringIO()
    w = csv.writer(f, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for tag, status, parent, expiry in rows:
        w.writerow((_defused(tag), status, _defused(parent) if parent else "", expiry or ""))
    return f.getvalue()


_DEFUSE = ("=", "+", "-", "@", "'")     # export.cell's formula characters, and the ' that defuses them


def _defused(v):
    """A tag as a CSV cell: a leading ' before what a spreadsheet would take for a formula (and
    before a tag that starts with ' itself, so that the import can take exactly one off)."""
    return "'" + v if v.startswith(_DEFUSE) else v


def _undefused(v):
    """A cell of the export back as it was: "'=X" is "=X", "''X" is "'X"."""
    return v[1:] if v[:1] == "'" and v[1:2] and v[1:2] in _DEFUSE else v


# --- SQL (run in the store's writer thread) -----------------------------------------------
def _load(db):
    return [tuple(r) for r in db.execute("SELECT t.tag, t.status, p.parent, t.expiry FROM id_tags t "
                                         "LEFT JOIN id_tag_parents p ON p.tag = t.tag")]


# keys of the transaction-level advisory locks that make MAX(...)+1 safe with several gateway
# processes on one PostgreSQL database (two writers would take the same number; the second's
# INSERT failed its primary key); SQLite has one writer
LOCK_TAG_LOG = 0x70630001
LOCK_RESERVATIONS = 0x70630002


def next_key(db, lock, sql):
    """MAX(key)+1 by `sql` (a SELECT COALESCE(MAX(...), 0)), the key's lock held to the commit."""
    if getattr(db, "dialect", "sqlite") == "postgresql":
        db.execute("SELECT pg_advisory_xact_lock(?)", (lock,))
    return db.execute(sql).fetchone()[0] + 1


def _next_version(db):
    return next_key(db, LOCK_TAG_LOG, "SELECT COALESCE(MAX(version), 0) FROM id_tag_log")


def _prune(db):
    n = db.execute("SELECT COUNT(*) FROM id_tag_log").fetchone()[0]
    if n > MAX_LOG:
        db.execute("DELETE FROM id_tag_log WHERE version <= ?", (list_version(db) - KEEP_LOG,))


def _put_many(db, entries):
    """Insert or change each (tag, status, parent, expiry); one log row per tag that changed.
    Returns the list's version after."""
    v = _next_version(db)
    for tag, status, parent, expiry in entries:
        db.execute("INSERT INTO id_tags (tag, status, expiry) VALUES (?,?,?) ON CONFLICT (tag) DO UPDATE "
                   "SET status=excluded.status, expiry=excluded.expiry", (tag, status, expiry))
        if parent:
            db.execute("INSERT INTO id_tag_parents (tag, parent) VALUES (?,?) ON CONFLICT (tag) DO UPDATE "
                       "SET parent=excluded.parent", (tag, parent))
        else:
            db.execute("DELETE FROM id_tag_parents WHERE tag=?", (tag,))
        db.execute("INSERT INTO id_tag_log (version, tag) VALUES (?,?)", (v, tag))
        v += 1
    _prune(db)
    return v - 1


def _delete(db, tag):
    if db.execute("DELETE FROM id_tags WHERE tag=?", (tag,)).rowcount == 0:
        return None
    db.execute("DELETE FROM id_tag_parents WHERE tag=?", (tag,))
    v = _next_version(db)
    db.execute("INSERT INTO id_tag_log (version, tag) VALUES (?,?)", (v, tag))
    return v


def list_version(db):
    return db.execute("SELECT COALESCE(MAX(version), 0) FROM id_tag_log").fetchone()[0]


def changed_since(db, version):
    """The tags changed after log `version` (deleted ones too), and the log's version now; None
    for the tags when the log no longer reaches back to `version` (pruned: send the whole list)."""
    oldest = db.execute("SELECT MIN(version) FROM id_tag_log").fetchone()[0]
    if oldest is not None and oldest > version + 1:
        return None, list_version(db)
    return ([r[0] for r in db.execute("SELECT DISTINCT tag FROM id_tag_log WHERE version > ? ORDER BY tag",
                                      (version,))], list_version(db))


class IdTags:
    """The list, for the OCPP handlers (info), the API and localsync. `on_change(tags)` is
    called after each change is stored (localsync: differential updates)."""

    def __init__(self, gw):
        self.gw = gw
        self.meta = {}          # tag -> (parent, expiry)
        # tag.upper() -> tag: OCPP 1.6 id tags are CiString20, case-insensitive; a station may send
        # "04a1b2c3" for the list's "04A1B2C3" (info), and the list never holds both (put_many)
        self.folded = {}
        self.version = 0        # id_tag_log's version
        self.on_change = None

    async def load(self):
        rows = await self.gw.store.run(_load)
        self.gw.id_tags = {r[0]: r[1] for r in rows}
        self.meta = {r[0]: (r[2], r[3]) for r in rows}
        self.folded = {r[0].upper(): r[0] for r in rows}
        self.version = await self.gw.store.run(list_version)

    async def reload(self, tags):
        """Other gateway processes changed `tags` (cluster.py: id_tags' trigger, delivered at the
        commit that also wrote their parents and the change log; a CSV import's come together):
        their rows read again, in one query per 500, and this process's stations' local lists
        brought up to date like after a change made here. The process that made a change gets
        its NOTIFY too, its cache already up to date: nothing changes, nothing is sent."""
        tags = sorted(tags)

        def rows(db):
            got = {}
            for i in range(0, len(tags), 500):
                part = tags[i:i + 500]
                for r in db.execute("SELECT t.tag, t.status, p.parent, t.expiry FROM id_tags t LEFT JOIN "
                                    "id_tag_parents p ON p.tag = t.tag WHERE t.tag IN (%s)" % ",".join("?" * len(part)),
                                    part):
                    got[r[0]] = (r[1], r[2], r[3])
            return got, list_version(db)
        got, self.version = await self.gw.store.run(rows)
        changed = []
        for tag in tags:
            was = (self.gw.id_tags.get(tag),) + self.meta.get(tag, (None, None))
            now = got.get(tag, (None, None, None))
            if was == now:
                continue
            changed.append(tag)
            if now[0] is None:
                self.gw.id_tags.pop(tag, None)
                self.meta.pop(tag, None)
                self.folded.pop(tag.upper(), None)
            else:
                self.gw.id_tags[tag] = now[0]
                self.meta[tag] = now[1:]
                self.folded[tag.upper()] = tag
        if changed and self.on_change is not None:
            self.on_change(changed)

    def info(self, tag, now=None):
        """The idTagInfo for `tag`: status, parentIdTag, expiryDate from the list; a tag past its
        expiry date is Expired; every tag is Accepted while the list is empty."""
        tags = self.gw.id_tags
        if not tags:
            return {"status": "Accepted"}
        status = tags.get(tag)
        if status is None:
            tag = self.folded.get(tag.upper()) if isinstance(tag, str) else None
            status = tags.get(tag) if tag is not None else None
            if status is None:
                return {"status": "Invalid"}
        parent, expiry = self.meta.get(tag, (None, None))
        out = {"status": status}
        if expiry:
            out["expiryDate"] = expiry
            if status == "Accepted" and expiry <= (now or utc_now()):
                out["status"] = "Expired"
        if parent:
            out["parentIdTag"] = parent
        return out

    def view(self, tag):
        parent, expiry = self.meta.get(tag, (None, None))
        out = {"id_tag": tag, "status": self.gw.id_tags[tag]}
        if parent:
            out["parent_id_tag"] = parent
        if expiry:
            out["expiry_date"] = expiry
            if out["status"] == "Accepted" and expiry <= utc_now():
                out["answered"] = "Expired"
        return out

    def rows(self):
        return [(t, s) + self.meta.get(t, (None, None)) for t, s in sorted(self.gw.id_tags.items())]

    def page(self, page=1, limit=100, q=None, status=None):
        tags = sorted(self.gw.id_tags)
        if q:
            ql = q.lower()
            tags = [t for t in tags if ql in t.lower()]
        if status:
            tags = [t for t in tags if self.gw.id_tags[t] == status]
        total = len(tags)
        start = (page - 1) * limit
        return {"total": total, "page": page, "limit": limit, "pages": max(1, -(-total // limit)),
                "version": self.version, "items": [self.view(t) for t in tags[start:start + limit]]}

    async def put_many(self, entries):
        """Store each (tag, status, parent, expiry) (one transaction: all or none)."""
        seen = {}
        for e in entries:   # case-insensitive tags: one spelling in the list, and in one import
            other = seen.setdefault(e[0].upper(), e[0])
            if other == e[0]:
                other = self.folded.get(e[0].upper(), e[0])
            if other != e[0]:
                raise ValueError("id tag %r differs only by case from %r (OCPP id tags are case-insensitive: a "
                                 "station cannot tell them apart): change %r instead" % (e[0], other, other))
        new = sum(1 for e in entries if e[0] not in self.gw.id_tags)
        if len(self.gw.id_tags) + new > MAX_TAGS:
            raise ValueError("the id-tag list holds at most %d tags (%d now, %d new)" % (
                MAX_TAGS, len(self.gw.id_tags), new))
        if not entries:
            return self.version
        self.version = await self.gw.store.run(_put_many, entries)
        for tag, status, parent, expiry in entries:
            self.gw.id_tags[tag] = status
            self.meta[tag] = (parent, expiry)
            self.folded[tag.upper()] = tag
        self._changed([e[0] for e in entries])
        return self.version

    async def delete(self, tag):
        v = await self.gw.store.run(_delete, tag)
        if v is None:
            return False
        self.version = v
        self.gw.id_tags.pop(tag, None)
        self.meta.pop(tag, None)
        self.folded.pop(tag.upper(), None)
        self._changed([tag])
        return True

    def _changed(self, tags):
        log.info("id-tag list version %d: %d tag%s changed (%s%s)", self.version, len(tags),
                 "" if len(tags) == 1 else "s", ", ".join(tags[:5]), ", ..." if len(tags) > 5 else "")
        if self.on_change is not None:
            self.on_change(tags)

