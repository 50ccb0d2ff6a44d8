# ThingSpeak direct upload. The latest reading every min_interval_s, with its created_at, to
# <url>/update; a body of "0" means ThingSpeak did not store the write (rate limit, bad key).
# A write that fails, or no Wi-Fi, opens the backlog on flash (flashq, sampler.backlog):
# from then on a reading is taken into it every min_interval_s by the sample task, and sent
# from there, each with its own created_at, until none is left (then the latest again), so an
# outage of ThingSpeak or of the Wi-Fi costs no reading (beyond thinning, past the budget):
# - one at a time to <url>/update, retried, never counted as sent until stored;
# - a backlog (more than one waiting) with thingspeak.channel_id set: up to 960 at a time
#   (a free licence's bulk limit) to <url>/channels/<id>/bulk_update.json, streamed from
#   flash into the request (the body is never in RAM), answered 202 {"success": true}
# (ts_bulk.py, both: imported only while there is a backlog to send, then dropped: heap).
# At most one write per min_interval_s per channel (15 s on a free licence, bulk included).
# created_at has a one-second resolution and must be unique in a channel: a reading stamped
# at or before the one sent before it (the clock was set back) goes out a second after it.
import asyncio
import sys

import fields
import httpc
import log
import sampler
from compat import time_ns
from reconnect import Backoff


_L = log.get("thingspeak")

_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def quote(s):
    out = []
    for c in str(s):
        if c in _SAFE:
            out.append(c)
        else:
            for b in c.encode():
                out.append("%%%02X" % b)
    return "".join(out)


def fmt(v):
    if isinstance(v, float):
        s = "%.3f" % v
        s = s.rstrip("0").rstrip(".") if "." in s else s
        return s or "0"
    return str(v)


def update_body(write_key, reading, created_at=None):
    """The form body of a write: api_key=...&field1=...; fields from the shared field map."""
    parts = ["api_key=" + quote(write_key)]
    for name, v in fields.thingspeak_fields(reading):
        parts.append("%s=%s" % (name, quote(fmt(v))))
    if reading.get("fault"):
        parts.append("status=" + quote(reading["fault"]))
    if created_at:
        parts.append("created_at=" + quote(created_at))
    return "&".join(parts)


def parse_answer(status, body):
    """Entry id (>0) when stored; raises OSError with a reason when not."""
    if status != 200:
        raise OSError("HTTP %d" % status)
    try:
        entry = int(body.strip() or b"0")
    except ValueError:
        raise OSError("unexpected answer %r" % body[:40])
    if entry <= 0:
        raise OSError("not stored (answer 0: rate limit or bad write key)")
    return entry


async def run(ctx):
    cfg = ctx.cfg["thingspeak"]
    st = ctx.state
    url = cfg["url"].rstrip("/")
    interval = cfg["min_interval_s"]
    back = Backoff(interval, max(interval, 300))
    st.links["thingspeak"] = "down"
    last_t = 0      # the second of the last entry sent (created_at must grow)
    last_seq = -1   # st.readings_seq of the last reading sent as it was taken
    await sampler.first_link(ctx)
    while True:
        q = ctx.backlogs.get("thingspeak")
        if q is None and not ctx.wifi_up.is_set():
            q = sampler.backlog(ctx, "thingspeak")   # no link: the readings wait on flash
        await ctx.wifi_up.wait()
        # an unverified https:// write is said once per link up (each write is a connection)
        tls = ("thingspeak.ca_cert", cfg["ca_cert"], None if st.links["thingspeak"] == "up" else _L)
        failed = False
        try:
            if q is not None:
                import ts_bulk

                try:
                    last_t = await ts_bulk.send(ctx, q, url, last_t, tls)
                finally:
                    del ts_bulk
                    sys.modules.pop("ts_bulk", None)
            else:
                if st.readings_seq == last_seq:
                    await asyncio.sleep(1)
                    continue
                last_seq = st.readings_seq
                t = time_ns() // 1000000000
                if t <= last_t:
                    t = last_t + 1
                failed = True   # only the body is held while the request waits on the network
                status, ans = await httpc.request("POST", url + "/update", update_body(
                    cfg["write_key"], st.reading(), sampler.iso_s(t)), tls=tls)
                entry = parse_answer(status, ans)
                failed = False
                last_t = t
                st.counters["ts_sent"] += 1
                _L.info("stored entry %d", entry)
        except Exception as e:  # network, timeout, HTTP error, "0": all mean not stored
            st.counters["ts_fail"] += 1
            st.links["thingspeak"] = "down"
            wait = back.next()
            if wait < interval:
                wait = interval
            _L.warn("write failed: %s; retry in %.1fs", e, wait)
            if failed:   # the reading of now, and those after it, wait on flash
                failed = False
                t = time_ns() // 1000000000
                try:
                    sampler.backlog(ctx, "thingspeak", t if t > last_t else last_t + 1, st.reading())
                except Exception as e:
                    _L.error("backlog: %r", e)
            await asyncio.sleep(wait)
            continue
        back.reset()
        st.links["thingspeak"] = "up"
        await asyncio.sleep(interval)
