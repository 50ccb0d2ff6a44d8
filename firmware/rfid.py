# The RFID reader task (charger.rfid): polls board.rfid_uid() every 200 ms and hands each card
# presented to the charge point as an idTag (its UID in upper-case hex, as OCPP 1.6 central
# systems commonly expect): ChargePoint.tick decides (authz.py). A card held to the reader is
# one tap; it counts again once it has been away for three polls. It also blinks the LED
# pattern of a refused card (state.blink, set by the charge point).
# The loop allocates nothing while no card is there (the board's poll does not either): a
# task resident all the time in a 192K heap.
import asyncio
from binascii import hexlify

import log
from compat import const

_L = log.get("rfid")
_POLL_MS = const(200)
_AWAY = const(3)        # polls without the card before it counts as a new tap


async def run(ctx):
    b = ctx.board
    st = ctx.state
    last = None
    away = _AWAY
    while True:
        uid = b.rfid_uid()
        if uid is None:
            if away < _AWAY:
                away += 1
        else:
            if away >= _AWAY or uid != last:
                last = uid
                tag = hexlify(uid).decode().upper()
                cp = ctx.cp
                if cp is None:
                    _L.warn("card %s: no OCPP charge point to authorize it (ocpp.url)", tag)
                else:
                    _L.info("card %s", tag)
                    cp.tap = tag
            away = 0
        if st.blink:
            st.blink -= 1
            b.led(st.blink & 1)
        await asyncio.sleep_ms(_POLL_MS)
