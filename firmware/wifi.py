# Wi-Fi link: connect with a timeout, exponential backoff with jitter between tries,
# notice drops and reconnect. Sets/clears ctx.wifi_up for the tasks that need the network.
import asyncio

import log
from compat import ticks_ms, ticks_diff
from reconnect import Backoff

_L = log.get("wifi")


async def run(ctx):
    b = ctx.board
    st = ctx.state
    c = ctx.cfg["wifi"]
    back = Backoff(1, c["backoff_max_s"])
    clock = not c["ntp_host"]   # set once per boot, tried at each connection until then
    while True:
        _L.info("connecting to %r", c["ssid"])
        b.wifi_connect(c["ssid"], c["password"], c["country"])
        t0 = ticks_ms()
        while not b.wifi_connected() and ticks_diff(ticks_ms(), t0) < c["timeout_s"] * 1000:
            await asyncio.sleep_ms(100)
        if not b.wifi_connected():
            wait = back.next()
            _L.warn("no connection after %ds; retry in %.1fs", c["timeout_s"], wait)
            b.wifi_disconnect()
            await asyncio.sleep(wait)
            continue
        back.reset()
        st.ip = b.ip()
        st.links["wifi"] = "up"
        ctx.wifi_up.set()
        _L.info("up, ip %s", st.ip)
        if not clock:
            clock = b.sync_clock(c["ntp_host"])
            if clock:
                _L.info("clock set from %s", c["ntp_host"])
            else:
                _L.warn("no time from %s: TLS may refuse certificates until the clock is set "
                        "(wifi.ntp_host); trying again at the next connection", c["ntp_host"])
        while b.wifi_connected():
            await asyncio.sleep_ms(500)
        st.ip = ""
        st.links["wifi"] = "down"
        ctx.wifi_up.clear()
        _L.warn("link lost")
        for fn in ctx.on_wifi_lost.values():
            fn()
        await asyncio.sleep(back.next())
