# ThingSpeak direct upload: the latest reading to <url>/update, at most one write per
# min_interval_s per channel (15 s on a free licence). A body of "0" means ThingSpeak did
# not store the write (rate limit, bad key): it is retried, never counted as sent.
import asyncio

import fields
import httpc
import log
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


def update_body(write_key, reading):
    """The form body of a write: api_key=...&field1=...; fields from the shared field map."""
    parts = ["api_key=" + quote(write_key)]
    for name, v in fields.thingspeak_fields(reading):
        parts.append("%s=%s" % (name, quote(fmt(v))))
    if reading.get("fault"):
        parts.append("status=" + quote(reading["fault"]))
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
    url = cfg["url"].rstrip("/") + "/update"
    interval = cfg["min_interval_s"]
    back = Backoff(interval, max(interval, 300))
    st.links["thingspeak"] = "down"
    last_seq = -1
    while True:
        await ctx.wifi_up.wait()
        if st.readings_seq == last_seq:
            await asyncio.sleep(1)
            continue
        seq = st.readings_seq
        try:
            # an unverified https:// write is said once per link up (each write is a connection)
            tls = ("thingspeak.ca_cert", cfg["ca_cert"], None if st.links["thingspeak"] == "up" else _L)
            status, body = await httpc.request("POST", url, update_body(cfg["write_key"], st.reading()),
                                               tls=tls)
            entry = parse_answer(status, body)
        except Exception as e:  # network, timeout, HTTP error, "0": all mean not stored
            st.counters["ts_fail"] += 1
            st.links["thingspeak"] = "down"
            wait = back.next()
            if wait < interval:
                wait = interval
            _L.warn("write failed: %s; retry in %.1fs", e, wait)
            await asyncio.sleep(wait)
            continue
        back.reset()
        last_seq = seq
        st.counters["ts_sent"] += 1
        st.links["thingspeak"] = "up"
        _L.info("stored entry %d", entry)
        await asyncio.sleep(interval)
