"""CSV exports of readings and transactions (what operators hand to accounting), streamed.

GET /api/stations/{id}/readings.csv, /api/stations/{id}/transactions.csv, /api/readings.csv,
/api/transactions.csv; each takes from= and to= (ISO 8601, to excluded; readings by their
timestamp, transactions by their start). An export holds MAX_ROWS rows at most: a longer one
is refused before anything is sent (400, with the count), so a file is never cut short
silently. Rows are read in chunks on a read-only connection of their own (store.reader) in a
worker thread and written as they come.

CSV as RFC 4180 (csv module: commas, quotes and line breaks in a cell are quoted). A text cell
that a spreadsheet would take for a formula (it starts with = + - @, a tab or a carriage
return) is written with a leading apostrophe (OWASP's advice against CSV injection); numbers
stay numbers.
"""
import asyncio
import csv
import io

from aiohttp import web

from picocharge.firmware import fields
from picocharge.firmware.fields import READING_KEYS

from .readings import _ts
from .store import EXPORT_COLUMNS_READINGS, EXPORT_COLUMNS_TRANSACTIONS, Store

MAX_ROWS = 100000
CHUNK = 2000

HEADER_READINGS = ("seq", "station", "ts") + READING_KEYS + ("status", "source")
HEADER_TRANSACTIONS = ("id", "station", "connector", "id_tag", "start_ts", "stop_ts", "meter_start_wh",
                       "meter_stop_wh", fields.READINGS[fields.ENERGY][fields.KEY], "reason")
assert len(HEADER_READINGS) == len(EXPORT_COLUMNS_READINGS)

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def cell(v):
    """A value as a CSV cell: None empty, numbers as they are, text defused."""
    if v is None:
        return ""
    if isinstance(v, str) and v.startswith(_FORMULA):
        return "'" + v
    return v


def _period(q):
    unknown = sorted(set(q) - {"from", "to"})
    if unknown:
        raise ValueError("unknown parameter %s: an export takes from= and to= (ISO 8601)" % unknown[0][:40])
    out = []
    for name in ("from", "to"):
        if len(q.getall(name, ())) > 1:
            raise ValueError("%s is given %d times: give it once" % (name, len(q.getall(name))))
        v = q.get(name)
        if v in (None, ""):
            out.append(None)
            continue
        try:
            out.append(_ts(v))
        except ValueError:
            raise ValueError("%s %r is not ISO 8601 (e.g. 2026-01-31T12:00:00Z)" % (name, v[:40]))
    if out[0] and out[1] and out[0] >= out[1]:
        raise ValueError("from %s is not before to %s" % (out[0], out[1]))
    return out


def _row(kind, r):
    if kind == "readings":
        return [cell(v) for v in r]
    tid, station, conn, tag, start, stop, m0, m1, reason = r
    energy = m1 - m0 if m0 is not None and m1 is not None else None
    return [cell(v) for v in (tid, station, conn, tag, start, stop, m0, m1, energy, reason)]


async def export(gw, request, kind, station=None):
    """The CSV of `kind` (readings, transactions) as a streamed answer; ValueError (400) when
    a parameter is wrong or the export would hold more than MAX_ROWS rows."""
    frm, to = _period(request.query)
    loop = asyncio.get_running_loop()
    db = await loop.run_in_executor(None, gw.store.reader)
    try:
        n = await loop.run_in_executor(None, Store.export_count, db, kind, station, frm, to)
        if n > MAX_ROWS:
            raise ValueError("this export holds %d %s, more than the %d an export may hold: give a shorter period "
                             "with from= and to=" % (n, kind, MAX_ROWS))
        name = "%s-%s%s%s.csv" % (station or "all", kind, ("-from-" + frm[:10]) if frm else "",
                                  ("-to-" + to[:10]) if to else "")
        resp = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
            "Content-Disposition": 'attachment; filename="%s"' % name.replace(":", "_"),
            "X-Rows": str(n)})
        await resp.prepare(request)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(HEADER_READINGS if kind == "readings" else HEADER_TRANSACTIONS)
        after, sent = 0, 0
        while sent < n:
            rows = await loop.run_in_executor(None, Store.export_chunk, db, kind, station, frm, to, after,
                                              min(CHUNK, n - sent))
            if not rows:
                break
            for r in rows:
                w.writerow(_row(kind, r))
            after = rows[-1][0]
            sent += len(rows)
            await resp.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
        await resp.write(buf.getvalue().encode())
        await resp.write_eof()
        return resp
    finally:
        db.close()

