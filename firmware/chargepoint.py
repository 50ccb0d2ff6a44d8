# The OCPP 1.6J charge point (one connector): the task app.py starts when cfg["ocpp"]["url"]
# is set. Boot, heartbeat, status, triggers, reset and the main loop; the other parts are
#   ocpp_link            the connection (CALLs and their answers, reader, pings) and the reconnect
#   ocpp_calls           calls from the central system: action -> on_<action> (imported per
#                        call and dropped again: ocpp_link.handle_call)
#   ocpp_smart           Smart Charging's calls (a group of ocpp_calls), smartlimit the limit the
#                        profiles give (ChargePoint.smart): both loaded per use and dropped
#   connector            connector 1's status (a pure state machine)
#   ocpp_tx              transactions and the journal's delivery (nothing lost)
#   aligned              clock-aligned data
# ChargePoint.session() serves one connection; ChargePoint.tick() makes the local decisions,
# online or offline (button, remote requests, meter samples, status, availability).
import asyncio
import gc
import sys
from binascii import hexlify
from os import listdir, urandom

import log
import ocpp_keys
import ocpp_tx
import ocppj
from aligned import Aligned, VENDOR
from compat import const, ticks_ms, ticks_diff, ticks_add, time_ns
from connector import Connector
from journal import Journal
import ocpp_link
from ocpp_link import Link, LinkDead, CallError, CallTimeout, handle_call

L = log.get("ocpp")

MODEL = "PicoCharge-1"
_TICK_S = 0.2
_BOOT_RETRY_S = const(10)  # when BootNotification's interval is 0


class ChargePoint:
    def __init__(self, ctx, ids=None):
        self.ctx = ctx
        self.st = ctx.state
        self.board = ctx.board
        self.cfg = ctx.cfg["ocpp"]
        self.keys = ocpp_keys.Keys(self.cfg)
        self.journal = Journal(budget=ctx.cfg["backlog"]["journal_kb"] * 1024).load()  # ocpp_journal.log
        self.ids = ids or ocppj.Ids(hexlify(urandom(4)).decode())
        self.link = Link(self.cfg, ctx.cfg["station_id"], self.ids, handle_call, self)
        self.conn = Connector(self.st)
        self.aligned = Aligned(self)
        self.clock_off = 0           # ms: central system's clock - board's clock
        self.booted = False
        self.req_start = None        # idTag of an accepted RemoteStartTransaction
        self.tap = None              # idTag of a card presented to the reader (rfid.py)
        self.req_stop = None         # reason of a requested stop
        self.req_reset = None        # "Soft" / "Hard"
        self.req_profile = None      # the TxProfile of that RemoteStartTransaction (flat form)
        # Smart Charging (smartlimit.py, loaded only to work it out): the composite limit in A
        # per phase; when to work it out again (None: no profile installed); the transaction
        # it was worked out for
        self.limit_a = ctx.cfg["charger"]["max_current_a"]
        files = listdir()
        self.limit_due = ticks_ms() if "profiles.json" in files else None
        self.lim_tx = None
        ctx.cp = self   # the control pilot (evse.py) reads the limit and the transaction
        self.avail_pending = None    # ChangeAvailability scheduled for after the transaction
        self.triggers = []           # (action, connector) asked for, or (action, payload) to send
        self.sent = {}               # connector -> (status, errorCode) sent on this connection
        self.attempts = 0            # of the journal's oldest message
        self.retry_at = ticks_ms()
        self.last_btn = False
        self.recovered = False
        self.was_up = False
        ctx.on_wifi_lost["ocpp"] = self.wifi_lost
        self.mv_due = self.hb_due = ticks_ms()
        self.st.available = bool(self.keys.extra.get("available", True))
        for ref in self.journal.open:
            L.info("transaction (local #%d) was open at power loss", ref)
        if "reserve.json" in files:   # a reservation kept across the reboot (cs_reserve.py)
            import cs_reserve   # (only then: a module once loaded leaves its names interned)
            cs_reserve.load(self)
            sys.modules.pop("cs_reserve", None)

    async def recover(self):
        """After a reboot: a transaction still open was cut by power loss; stop it."""
        for _ in range(50):  # wait (at most ~5 s) for the first reading of the energy register
            if self.st.readings_seq > 0:
                break
            await asyncio.sleep(0.1)
        for ref in list(self.journal.open):
            info = self.journal.open[ref]
            info["ref"] = ref
            ocpp_tx.stop(self, "PowerLoss", info)
        self.recovered = True

    # --- clock ------------------------------------------------------------------
    # Integer milliseconds, never a float: a Pico W's single-precision float holds an epoch
    # only to about 2 minutes.
    def now(self):
        """The station's clock: epoch milliseconds (int)."""
        return time_ns() // 1000000 + self.clock_off

    def stamp(self):
        return ocppj.iso_ms(self.now())

    def _set_clock(self, iso):
        if not iso:
            return
        try:
            self.clock_off = ocppj.parse_iso_ms(iso) - time_ns() // 1000000
        except ValueError:
            L.warn("central system sent an unreadable currentTime %r", iso[:40])
            return
        self.aligned.clock_set(self.now())

    # --- local decisions (online and offline) -----------------------------------------
    def set_available(self, want):
        if want != self.st.available:
            self.st.available = want
            self.keys.set_extra("available", want)
            self.st.apply_relay(self.board)
            L.info("connector %s", "operative" if want else "inoperative")

    def online(self):
        return self.booted and self.link.ws is not None and self.link.dead is None

    def wifi_lost(self):
        """Called by the Wi-Fi task on a drop: the socket under the WebSocket is gone (on a
        Pico W it would fail or hang), so end the session now; the reconnect with backoff and
        the journal replay follow as after any other link loss."""
        self.link.lost(LinkDead("Wi-Fi lost"))

    async def tick(self):
        st = self.st
        conn = self.conn
        if self.recovered:
            btn = self.board.button()
            if btn and not self.last_btn:
                if conn.tx:
                    self.req_stop = "Local"
                elif not conn.preparing:
                    if not self.cfg["id_tag"]:
                        L.warn("button pressed, but ocpp.id_tag is empty: set it to allow local starts")
                    elif st.fault or not st.available:
                        L.warn("button pressed, but the connector is %s", conn.status(1)[0])
                    else:
                        await ocpp_tx.start(self, self.cfg["id_tag"], True)
            self.last_btn = btn
            if self.tap is not None:   # a card on the reader (rfid.py): authz, loaded for it
                import authz
                try:
                    await authz.tapped(self)
                finally:
                    for m in authz.DROP:
                        sys.modules.pop(m, None)
            if self.req_start is not None:
                tag = self.req_start
                self.req_start = None
                await ocpp_tx.start(self, tag, self.keys["AuthorizeRemoteTxRequests"])
                if not conn.tx:   # not started: its profile goes too
                    self.req_profile = None
            if self.req_stop and conn.tx:
                ocpp_tx.stop(self, self.req_stop)
            self.req_stop = None
            if conn.tx:
                ocpp_tx.sample(self)
            if self.avail_pending is not None and not conn.tx:
                self.set_available(self.avail_pending)
                self.avail_pending = None
        if conn.tx is not self.lim_tx:   # a transaction started or ended: its profiles follow it
            self.lim_tx = conn.tx
            if self.req_profile or self.limit_due is not None:
                self.limit_due = ticks_ms()
        if self.limit_due is not None and ticks_diff(ticks_ms(), self.limit_due) >= 0:
            self.smart()   # a schedule changes, or the transaction did: the limit again
        r = conn.resv
        if r and self.now() // 1000 >= r[3]:   # the reservation's expiryDate
            import cs_reserve
            cs_reserve.end(self, "expired")
            sys.modules.pop("cs_reserve", None)
        self.aligned.take()
        st.status = conn.update(self.online())
        if conn.tx:
            st.apply_relay(self.board)

    def smart(self):
        """smartlimit.tick: smartlimit and composite are in the heap only meanwhile. A failure
        (no heap, a broken file) leaves the limit as it was and tries again in 10 s."""
        try:
            import smartlimit
            smartlimit.tick(self)
        except Exception as e:
            L.error("smart charging: %r", e)
            self.limit_due = ticks_add(ticks_ms(), 10000)   # the profiles stay on flash
        for m in ("ocpp_smart", "chargeprofile", "smartlimit", "composite"):   # as ocpp_smart's calls
            sys.modules.pop(m, None)

    # --- online work ------------------------------------------------------------
    async def send_status(self):
        for c in (0, 1):
            s, err = self.conn.status(c)
            if self.sent.get(c) != (s, err):
                try:
                    await self.link.call("StatusNotification", ocppj.status_notification(c, s, self.stamp(), err))
                except (CallError, CallTimeout) as e:  # not worth a retry loop: the next change is sent
                    L.warn("StatusNotification: %s", e)
                self.sent[c] = (s, err)
                self.conn.sent(c, s)

    async def heartbeat(self):
        res = await self.link.call("Heartbeat", {})
        self._set_clock(res.get("currentTime"))
        self.hb_due = ticks_add(ticks_ms(), self.keys["HeartbeatInterval"] * 1000)

    async def boot(self):
        while True:
            p = ocppj.boot_notification(VENDOR, MODEL, self.board.unique_id(), self.ctx.fw_version)
            try:
                res = await self.link.call("BootNotification", p)
            except (CallError, CallTimeout) as e:
                L.warn("BootNotification: %s", e)
                res = {"status": "Rejected", "interval": 0}
            self._set_clock(res.get("currentTime"))
            iv = res.get("interval", 0)
            iv = iv if type(iv) is int and iv > 0 else 0
            if res.get("status") == "Accepted":
                if iv:
                    self.keys.values["HeartbeatInterval"] = iv
                self.booted = True
                self.hb_due = ticks_add(ticks_ms(), self.keys["HeartbeatInterval"] * 1000)
                L.info("boot accepted, heartbeat every %ds", self.keys["HeartbeatInterval"])
                if "fw" in listdir():   # an update on trial is kept, a rollback reported
                    import fwslot
                    fwslot.accepted(self)
                    sys.modules.pop("fwslot", None)
                return
            wait = iv or _BOOT_RETRY_S
            L.warn("boot %s: next BootNotification in %ds", res.get("status"), wait)
            end = ticks_add(ticks_ms(), wait * 1000)
            while ticks_diff(end, ticks_ms()) > 0:
                if self.link.dead:
                    raise self.link.dead
                n = len(self.triggers)
                self.triggers = [t for t in self.triggers if t[0] != "BootNotification"]
                if len(self.triggers) != n:  # TriggerMessage(BootNotification): try again now
                    break
                if self.req_reset:          # a Reset is allowed while Pending
                    await self.reset()
                await self.tick()
                await asyncio.sleep(_TICK_S)

    async def triggered(self):
        while self.triggers:
            m, c = self.triggers.pop(0)
            if isinstance(c, dict):      # a notification queued (ota, diag, a TriggerMessage)
                await self.link.call(m, c)
            elif m == "BootNotification":
                self.booted = False
                await self.boot()
            elif m == "Heartbeat":
                await self.heartbeat()
            elif m == "StatusNotification":
                for k in ((0, 1) if c is None else (c,)):
                    self.sent.pop(k, None)
                await self.send_status()
            elif m == "MeterValues":
                mv = ocppj.meter_value(self.stamp(), self.st.reading(), self.keys.measurands(), "Trigger")
                tx = self.conn.tx
                tx_id = self.journal.txid(tx["ref"]) if tx else None
                await self.link.call("MeterValues", ocppj.meter_values(1, tx_id, [mv]))

    async def reset(self):
        kind = self.req_reset
        L.info("%s reset requested", kind)
        if self.conn.tx:
            ocpp_tx.stop(self, "HardReset" if kind == "Hard" else "SoftReset")
        if self.booted:     # before the boot is accepted only BootNotification may go out
            await ocpp_tx.settle(self)
        if self.link.ws:
            await self.link.ws.close()
        self.board.reset(kind == "Hard")

    async def online_loop(self):
        if not self.booted:
            await self.boot()
        self.sent = {}
        last_gc = ticks_ms()
        link = self.link
        while True:
            if link.dead:
                raise link.dead
            await self.tick()
            await ocpp_tx.flush(self)
            await self.send_status()
            try:
                if self.triggers:
                    await self.triggered()
                al = self.aligned
                if al.values or al.climate is not None:
                    await al.send()
                if ticks_diff(ticks_ms(), self.hb_due) >= 0:
                    await self.heartbeat()
            except (CallError, CallTimeout) as e:  # the link is fine; only that answer was not
                L.warn("%s", e)
                self.hb_due = ticks_add(ticks_ms(), self.keys["HeartbeatInterval"] * 1000)
            if self.req_reset:
                await self.reset()
            await link.keepalive(self.keys["WebSocketPingInterval"])
            if ticks_diff(ticks_ms(), last_gc) > 5000:
                gc.collect()
                last_gc = ticks_ms()
            await asyncio.sleep(_TICK_S)

    async def session(self):
        link = self.link
        await link.open()  # and its reader
        if not self.ctx.wifi_up.is_set():  # Wi-Fi went while connecting
            link.lost(LinkDead("Wi-Fi lost"))
        self.aligned.dt_ok = True
        link.ping_due = ticks_add(ticks_ms(), self.keys["WebSocketPingInterval"] * 1000)
        self.st.links["ocpp"] = "up"
        self.was_up = True
        gc.collect()
        L.info("connected (%d bytes free)", gc.mem_free())
        try:
            await self.online_loop()
        finally:
            await link.close()
            self.st.links["ocpp"] = "down"
            gc.collect()

    async def idle(self, seconds):
        """Wait (link down) while the station keeps working: button, samples, status."""
        end = ticks_add(ticks_ms(), int(seconds * 1000))
        while ticks_diff(end, ticks_ms()) > 0:
            await self.tick()
            await asyncio.sleep(_TICK_S)


def run(ctx):
    """The OCPP task: never returns, never raises (ocpp_link.run: reconnects with backoff)."""
    return ocpp_link.run(ctx, ChargePoint)
