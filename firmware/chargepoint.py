# The OCPP 1.6J charge point (one connector): one asyncio task, started by app.py when
# cfg["ocpp"]["url"] is set. Boot, heartbeat, status, transactions (journalled on flash so
# nothing is lost across link drops and power cuts) and the calls of the central system.
#
#   run(ctx)                       the task: never returns, never raises
#     ChargePoint.session()        one WebSocket connection: reader task + the main loop
#     ChargePoint.tick()           local decisions, online or offline: button, remote
#                                  requests, meter samples, status, availability
import asyncio
import gc

from binascii import hexlify
from os import urandom

import log
import ocpp_keys
import ocppj
import ws
from compat import const, ticks_ms, ticks_diff, ticks_add, time_ns
from journal import Journal, K_METER, K_START, K_STOP
from reconnect import Backoff

L = log.get("ocpp")

VENDOR = "PicoCharge"
MODEL = "PicoCharge-1"
JOURNAL_FILE = "ocpp_journal.log"
PROTOCOL = "ocpp1.6"
_TICK_S = 0.2
_CHARGING_A = 0.5          # below this a closed relay means the EV is not drawing: SuspendedEV
_BOOT_RETRY_S = const(10)  # when BootNotification's interval is 0
_MAX_FRAME = const(8192)
_FRAME_BUF = const(1024)
_NO_DT = ("UnknownVendorId", "UnknownMessageId")  # DataTransfer answers: stop sending it


class LinkDead(OSError):
    pass


class CallError(Exception):
    def __init__(self, action, code, description):
        super().__init__("%s answered CALLERROR %s: %s" % (action, code, description))
        self.code = code


class CallTimeout(Exception):
    pass


class ChargePoint:
    def __init__(self, ctx, ids=None):
        self.ctx = ctx
        self.st = ctx.state
        self.board = ctx.board
        self.cfg = ctx.cfg["ocpp"]
        self.station = ctx.cfg["station_id"]
        self.keys = ocpp_keys.Keys(self.cfg)
        self.journal = Journal(JOURNAL_FILE).load()
        self.ids = ids or ocppj.Ids(hexlify(urandom(4)).decode())
        self.clock_off = 0           # ms: central system's clock - board's clock
        self.booted = False
        self.ws = None
        self.dead = None             # the exception that ended the reader
        self._wait_id = None         # the one outstanding CALL
        self._reply = None
        self._ev = asyncio.Event()
        # journalled messages are framed in here (flush), allocated once at boot: a MeterValues
        # frame (~850 bytes) needs no new block of that size on a fragmented heap
        self.frame_buf = bytearray(_FRAME_BUF)
        self.tx = None               # {"ref", "tag", "ms", "b"} of the running transaction
        self.preparing = False
        self.finishing = False
        self.avail_pending = None    # ChangeAvailability scheduled for after the transaction
        self.req_start = None        # idTag of an accepted RemoteStartTransaction
        self.req_stop = None         # reason of a requested stop
        self.req_reset = None        # "Soft" / "Hard"
        self.triggers = []
        self.sent = {}               # connector -> (status, errorCode) sent on this connection
        self.attempts = 0
        self.retry_at = ticks_ms()
        self.last_btn = False
        self.last_relay = False
        self.closed_seq = -1         # readings_seq when the relay was last closed
        self.recovered = False
        self.was_up = False
        self.al_due = None           # next clock-aligned sample (station clock, epoch ms)
        self.al_tick = 0             # ... and when it is due in ticks_ms (cheap to check)
        self.al_iv = 0
        self.aligned = None          # clock-aligned MeterValues (no transaction) for the link
        self.climate = None          # DataTransfer Climate data to send after the clock-aligned sample
        self.dt_ok = True            # the central system takes our Climate DataTransfer
        ctx.on_wifi_lost["ocpp"] = self.wifi_lost
        now = ticks_ms()
        self.mv_due = now
        self.hb_due = now
        self.ping_due = now
        self.st.available = bool(self.keys.extra.get("available", True))
        for ref in self.journal.open:
            L.info("transaction (local #%d) was open at power loss", ref)

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
        if self.al_due is not None:  # the next clock-aligned slot by the corrected clock
            d = self.al_due - self.now()
            if -self.al_iv * 1000 < d <= self.al_iv * 1000:
                self.al_tick = ticks_add(ticks_ms(), d)
            else:
                self.al_due = None  # jumped by more than an interval: find the slot again

    # --- calls ------------------------------------------------------------------
    async def call(self, action, payload, mid=None):
        """Send one CALL and wait for its answer (payload). Raises CallError, CallTimeout,
        LinkDead or the reader's error."""
        if mid is None:
            mid = self.ids.next()
        return await self.send_call(action, mid, ocppj.call(mid, action, payload))

    async def send_call(self, action, mid, frame):
        """call() for a frame already built (`mid` is its message id)."""
        if self.dead or self.ws is None:
            raise LinkDead("not connected")
        self._wait_id = mid
        self._reply = None
        self._ev.clear()
        sent_ms = ticks_ms()
        L.debug("-> %s %s", action, mid)
        await self.ws.send(frame)
        try:
            await asyncio.wait_for(self._ev.wait(), self.cfg["call_timeout_s"])
        except asyncio.TimeoutError:
            if self.dead:
                raise self.dead
            if ticks_diff(self.ws.last_rx, sent_ms) < 0:
                raise LinkDead("no answer to %s and nothing received for %ds" % (
                    action, self.cfg["call_timeout_s"]))
            raise CallTimeout("no answer to %s %s within %ds" % (action, mid, self.cfg["call_timeout_s"]))
        finally:
            self._wait_id = None
        if self._reply is None:
            raise self.dead or LinkDead("connection lost")
        kind, res = self._reply
        if kind == ocppj.CALLERROR:
            raise CallError(action, res[0], res[1])
        return res

    async def _send(self, frame):
        try:
            await self.ws.send(frame)
        except Exception as e:
            self.dead = e
            self._ev.set()

    async def reader(self):
        try:
            while True:
                msg = await self.ws.recv()
                await self.on_frame(msg)
        except Exception as e:  # link gone or broken: wake the main loop
            self.dead = e
            self._ev.set()

    async def on_frame(self, msg):
        if not isinstance(msg, str):
            L.warn("ignoring a binary frame (%d bytes): OCPP-J uses text frames", len(msg))
            return
        try:
            mtype, mid, action, payload = ocppj.parse(msg)
        except ocppj.FrameError as e:
            L.warn("bad frame: %s", e.description)
            await self._send(ocppj.error(e.msg_id, e.code, e.description))
            return
        if mtype == ocppj.CALL:
            try:
                if action in ocppj.INCOMING:
                    ocppj.check_payload(action, payload, mid)
                    res = self.handle(action, payload)
                else:
                    res = None
            except ocppj.FrameError as e:
                L.warn("%s %s: %s", action, mid, e.description)
                await self._send(ocppj.error(mid, e.code, e.description))
                return
            except Exception as e:
                L.error("%s %s failed: %r", action, mid, e)
                await self._send(ocppj.error(mid, ocppj.INTERNAL_ERROR, "%s failed" % action))
                return
            if res is None:
                L.info("%s is not implemented", action[:40])
                await self._send(ocppj.error(mid, ocppj.NOT_IMPLEMENTED, "%s is not implemented" % action[:40]))
            else:
                await self._send(ocppj.result(mid, res))
            return
        if mid != self._wait_id:
            L.warn("ignoring an answer to unknown message %s", mid)
            return
        self._reply = (mtype, payload)
        self._ev.set()

    # --- calls from the central system (answer at once; the main loop acts) -----------
    def handle(self, action, p):
        st = self.st
        L.info("<- %s", action)
        if action == "RemoteStartTransaction":
            if self.tx or self.req_start or self.preparing or st.fault or not st.available \
                    or p.get("connectorId", 1) != 1:
                return {"status": "Rejected"}
            self.req_start = p["idTag"]
            return {"status": "Accepted"}
        if action == "RemoteStopTransaction":
            if self.tx and self.journal.txid(self.tx["ref"]) == p["transactionId"]:
                self.req_stop = "Remote"
                return {"status": "Accepted"}
            return {"status": "Rejected"}
        if action == "Reset":
            self.req_reset = p["type"]
            return {"status": "Accepted"}
        if action == "ChangeAvailability":
            c = p["connectorId"]
            want = p["type"] == "Operative"
            if c not in (0, 1):
                return {"status": "Rejected"}
            if self.tx and not want:
                self.avail_pending = want
                return {"status": "Scheduled"}
            self._set_available(want)
            return {"status": "Accepted"}
        if action == "GetConfiguration":
            keys = p.get("key")
            if keys and len(keys) > self.keys["GetConfigurationMaxKeys"]:
                raise ocppj.FrameError(ocppj.OCCURENCE_CONSTRAINT, "at most %d keys (GetConfigurationMaxKeys)"
                                       % self.keys["GetConfigurationMaxKeys"])
            return self.keys.get_configuration(keys)
        if action == "ChangeConfiguration":
            k = p["key"]
            res = self.keys.change(k, p["value"])
            L.info("ChangeConfiguration %s: %s", k[:50], res)  # not the value: it may be a key
            if res == "Accepted":
                if k == "MeterValueSampleInterval":
                    self.mv_due = ticks_add(ticks_ms(), self.keys[k] * 1000)
                elif k == "HeartbeatInterval":
                    self.hb_due = ticks_add(ticks_ms(), self.keys[k] * 1000)
                elif k == "WebSocketPingInterval":
                    self.ping_due = ticks_add(ticks_ms(), self.keys[k] * 1000)
            return {"status": res}
        if action == "TriggerMessage":
            m = p["requestedMessage"]
            if m in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
                return {"status": "NotImplemented"}
            if p.get("connectorId", 1) not in (0, 1):
                return {"status": "Rejected"}
            self.triggers.append((m, p.get("connectorId")))
            return {"status": "Accepted"}
        if action == "ClearCache":
            return {"status": "Accepted"}   # no authorization cache: nothing to clear
        if action == "UnlockConnector":
            return {"status": "NotSupported"}  # the station has a fixed cable, no lock
        if action == "DataTransfer":
            return {"status": "UnknownVendorId"}
        return None

    def _set_available(self, want):
        if want != self.st.available:
            self.st.available = want
            self.keys.set_extra("available", want)
            self.st.apply_relay(self.board)
            L.info("connector %s", "operative" if want else "inoperative")

    # --- local decisions (online and offline) -----------------------------------------
    def status(self, connector):
        st = self.st
        if connector == 0:
            return ("Available" if st.available else "Unavailable"), "NoError"
        if st.fault:
            return "Faulted", st.fault
        if self.tx:
            if not st.relay:
                return "SuspendedEVSE", "NoError"
            if st.readings_seq > self.closed_seq + 1 and (st.current_a or 0) < _CHARGING_A:
                return "SuspendedEV", "NoError"
            return "Charging", "NoError"
        if self.preparing:
            return "Preparing", "NoError"
        if self.finishing:
            return "Finishing", "NoError"
        if not st.available:
            return "Unavailable", "NoError"
        return "Available", "NoError"

    def online(self):
        return self.booted and self.ws is not None and self.dead is None

    def wifi_lost(self):
        """Called by the Wi-Fi task on a drop: the socket under the WebSocket is gone (on a
        Pico W it would fail or hang), so end the session now; the reconnect with backoff and
        the journal replay follow as after any other link loss."""
        if self.ws is not None and self.dead is None:
            self.dead = LinkDead("Wi-Fi lost")
            self._ev.set()

    async def tick(self):
        st = self.st
        if self.recovered:
            btn = self.board.button()
            if btn and not self.last_btn:
                if self.tx:
                    self.req_stop = "Local"
                elif not self.preparing:
                    if not self.cfg["id_tag"]:
                        L.warn("button pressed, but ocpp.id_tag is empty: set it to allow local starts")
                    elif st.fault or not st.available:
                        L.warn("button pressed, but the connector is %s", self.status(1)[0])
                    else:
                        await self.start(self.cfg["id_tag"], True)
            self.last_btn = btn
            if self.req_start is not None:
                tag = self.req_start
                self.req_start = None
                await self.start(tag, self.keys["AuthorizeRemoteTxRequests"])
            if self.req_stop and self.tx:
                self.stop(self.req_stop)
            self.req_stop = None
            if self.tx:
                self.sample()
            if self.avail_pending is not None and not self.tx:
                self._set_available(self.avail_pending)
                self.avail_pending = None
        self.align()
        if self.finishing and not self.online():
            self.finishing = False
        if st.relay and not self.last_relay:  # (re)closed, e.g. after a fault: give the EV a sample
            self.closed_seq = st.readings_seq
        self.last_relay = st.relay
        st.status = self.status(1)[0]
        if self.tx:
            st.apply_relay(self.board)

    def sample(self):
        iv = self.keys["MeterValueSampleInterval"]
        now = ticks_ms()
        if iv <= 0 or ticks_diff(now, self.mv_due) < 0:
            return
        self.mv_due = ticks_add(self.mv_due, iv * 1000)
        if ticks_diff(now, self.mv_due) >= 0:  # fell behind (e.g. a long call): skip ahead
            self.mv_due = ticks_add(now, iv * 1000)
        mv = ocppj.meter_value(self.stamp(), self.st.reading(), self.keys.measurands(), "Sample.Periodic")
        self.journal.add(K_METER, self.ids.next(), "MeterValues", ocppj.meter_values(1, None, [mv]),
                         self.tx["ref"])

    def align(self):
        """Clock-aligned data: every ClockAlignedDataInterval seconds after midnight UTC, a
        MeterValues (Sample.Clock, MeterValuesAlignedData, stamped with the aligned time), also
        when idle. In a transaction it is a transaction message (journalled, with its id);
        outside one it is sent only if the link is up (dropped if not, never journalled)."""
        iv = self.keys["ClockAlignedDataInterval"]
        if iv <= 0:
            self.al_due = None
            return
        if self.al_due is not None and iv == self.al_iv and ticks_diff(ticks_ms(), self.al_tick) < 0:
            return  # (5 times a second: no clock arithmetic, which allocates on a Pico W)
        now = self.now()
        due = self.al_due
        if due is None or iv != self.al_iv or now - due >= iv * 1000:
            # first time, a new interval, or a slot missed by a whole interval: the next slot
            due = None
        elif now < due:  # the ticks ran a little ahead of the clock
            self.al_tick = ticks_add(ticks_ms(), due - now)
            return
        self.al_iv = iv
        self.al_due = ocppj.next_aligned(now, iv)
        self.al_tick = ticks_add(ticks_ms(), self.al_due - now)
        if due is None:
            return
        st = self.st
        mv = ocppj.meter_value(ocppj.iso_ms(due), st.reading(),
                               self.keys.measurands("MeterValuesAlignedData"), "Sample.Clock")
        if self.tx:
            self.journal.add(K_METER, self.ids.next(), "MeterValues",
                             ocppj.meter_values(1, None, [mv]), self.tx["ref"])
        elif self.online():
            self.aligned = ocppj.meter_values(1, None, [mv])
        else:
            L.debug("offline: clock-aligned sample dropped")
        if self.online() and self.dt_ok:
            self.climate = ocppj.climate(st.humidity, st.chip_temp_c)

    async def send_aligned(self):
        p = self.aligned
        self.aligned = None
        if p:
            await self.call("MeterValues", p)
        c = self.climate
        self.climate = None
        if c is None:
            return
        # OCPP 1.6 has no humidity measurand, and no location for the RP2040's own temperature
        # (Body is the enclosure's): both go in a DataTransfer
        try:
            res = await self.call("DataTransfer", {"vendorId": VENDOR, "messageId": "Climate", "data": c})
            dt = res.get("status")
        except CallError as e:
            dt = e.code
        if dt != "Accepted":
            L.info("DataTransfer Climate: %s", dt)
            if dt in _NO_DT or dt == "NotImplemented":
                self.dt_ok = False  # not for this central system: stop asking (this connection)

    async def start(self, id_tag, authorize):
        self.preparing = True
        self.st.status = "Preparing"
        try:
            await self._start(id_tag, authorize)
        finally:
            self.preparing = False  # started, refused, or the link died on the way

    async def _start(self, id_tag, authorize):
        st = self.st
        if self.online():
            await self.send_status()
        if authorize:
            ok = None
            if self.online():
                try:
                    res = await self.call("Authorize", {"idTag": id_tag})
                    ok = res.get("idTagInfo", {}).get("status")
                except (CallError, CallTimeout) as e:
                    L.warn("Authorize failed (%s): deciding offline", e)
            if ok is None:
                ok = "Accepted" if self.keys["LocalAuthorizeOffline"] else "Invalid"
            if ok != "Accepted":
                L.warn("idTag not authorized (%s): no transaction", ok)
                return
        ts = self.stamp()
        wh = st.energy_wh or 0.0
        meter = int(wh)
        begin = ocppj.meter_value(ts, st.reading(), self.keys.measurands("StopTxnSampledData"),
                                  "Transaction.Begin")
        info = {"tag": id_tag, "ms": meter, "b": begin}
        ref = self.journal.open_tx(info)
        self.journal.add(K_START, self.ids.next(), "StartTransaction",
                         ocppj.start_transaction(1, id_tag, meter, ts), ref)
        info["ref"] = ref
        self.tx = info
        st.charge_wanted = True
        st.apply_relay(self.board)
        self.closed_seq = st.readings_seq
        self.mv_due = ticks_add(ticks_ms(), self.keys["MeterValueSampleInterval"] * 1000)
        L.info("transaction (local #%d) started for %s at %d Wh", ref, id_tag, meter)

    def stop(self, reason, tx=None):
        st = self.st
        tx = tx or self.tx
        ts = self.stamp()
        meter = int(st.energy_wh or 0.0)
        if meter < tx["ms"]:
            meter = tx["ms"]
        end = ocppj.meter_value(ts, st.reading(), self.keys.measurands("StopTxnSampledData"),
                                "Transaction.End")
        data = [tx["b"], end] if tx.get("b") else [end]
        p = ocppj.stop_transaction(0, tx["tag"], meter, ts, reason, data)
        del p["transactionId"]  # not known yet, maybe: put in when sent
        self.journal.add(K_STOP, self.ids.next(), "StopTransaction", p, tx["ref"])
        self.journal.close_tx(tx["ref"])
        L.info("transaction (local #%d) stopped: %s at %d Wh", tx["ref"], reason, meter)
        if tx is self.tx:
            self.tx = None
            st.charge_wanted = False
            st.apply_relay(self.board)
            self.finishing = True

    async def recover(self):
        """After a reboot: a transaction still open was cut by power loss; stop it."""
        for _ in range(50):  # wait (at most ~5 s) for the first reading of the energy register
            if self.st.readings_seq > 0:
                break
            await asyncio.sleep(0.1)
        for ref in list(self.journal.open):
            info = self.journal.open[ref]
            info["ref"] = ref
            self.stop("PowerLoss", info)
        self.recovered = True

    # --- online work ------------------------------------------------------------
    async def send_status(self):
        for c in (0, 1):
            s, err = self.status(c)
            if self.sent.get(c) != (s, err):
                try:
                    await self.call("StatusNotification", ocppj.status_notification(c, s, self.stamp(), err))
                except (CallError, CallTimeout) as e:  # not worth a retry loop: the next change is sent
                    L.warn("StatusNotification: %s", e)
                self.sent[c] = (s, err)
                if c == 1 and s == "Finishing":
                    self.finishing = False

    async def flush(self):
        """Send the journal, oldest first, one CALL at a time; each removed once answered."""
        j = self.journal
        while j.pending and self.dead is None:
            if ticks_diff(self.retry_at, ticks_ms()) > 0:
                return
            seq, _, _, kind, ref = j.pending[0]
            tx_id = None
            if kind != K_START:
                tx_id = j.txid(ref)
                if tx_id is None:
                    L.error("dropping %s #%d: its StartTransaction was never accepted", j.first()[3], seq)
                    j.done(seq)
                    continue
            _, _, mid, action, frame, _ = j.first(ocppj.call_frame, tx_id, ws.HEADROOM, self.frame_buf)
            try:
                res = await self.send_call(action, mid, frame)
            except (CallError, CallTimeout) as e:
                self.attempts += 1
                if self.attempts >= self.keys["TransactionMessageAttempts"]:
                    L.error("giving up %s #%d after %d attempts: %s", action, seq, self.attempts, e)
                    j.done(seq)
                    self.attempts = 0
                    continue
                wait = self.keys["TransactionMessageRetryInterval"] * self.attempts
                L.warn("%s #%d failed (%s): retry in %ds", action, seq, e, wait)
                self.retry_at = ticks_add(ticks_ms(), wait * 1000)
                return
            self.attempts = 0
            if kind == K_START:
                tx_id = res.get("transactionId")
                if type(tx_id) is not int:
                    tx_id = 0
                j.set_txid(ref, tx_id)
                tag = res.get("idTagInfo", {}).get("status")
                L.info("transaction (local #%d) has id %d (idTag %s)", ref, tx_id, tag)
                if tag != "Accepted" and self.tx and self.tx["ref"] == ref \
                        and self.keys["StopTransactionOnInvalidId"]:
                    self.stop("DeAuthorized")
            j.done(seq)
            if kind == K_STOP:
                L.info("transaction %s closed at the central system", j.txid(ref))
        gc.collect()

    async def heartbeat(self):
        res = await self.call("Heartbeat", {})
        self._set_clock(res.get("currentTime"))
        self.hb_due = ticks_add(ticks_ms(), self.keys["HeartbeatInterval"] * 1000)

    async def boot(self):
        while True:
            p = ocppj.boot_notification(VENDOR, MODEL, self.board.unique_id(), self.ctx.fw_version)
            try:
                res = await self.call("BootNotification", p)
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
                return
            wait = iv or _BOOT_RETRY_S
            L.warn("boot %s: next BootNotification in %ds", res.get("status"), wait)
            end = ticks_add(ticks_ms(), wait * 1000)
            while ticks_diff(end, ticks_ms()) > 0:
                if self.dead:
                    raise self.dead
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
            if m == "BootNotification":
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
                tx_id = self.journal.txid(self.tx["ref"]) if self.tx else None
                await self.call("MeterValues", ocppj.meter_values(1, tx_id, [mv]))

    async def reset(self):
        kind = self.req_reset
        L.info("%s reset requested", kind)
        if self.tx:
            self.stop("HardReset" if kind == "Hard" else "SoftReset")
        if self.booted:     # before the boot is accepted only BootNotification may go out
            try:
                await self.flush()
                await self.send_status()
            except Exception as e:
                L.warn("before reset: %r", e)
        if self.ws:
            await self.ws.close()
        self.board.reset(kind == "Hard")

    async def online_loop(self):
        if not self.booted:
            await self.boot()
        self.sent = {}
        last_gc = ticks_ms()
        while True:
            if self.dead:
                raise self.dead
            await self.tick()
            await self.flush()
            await self.send_status()
            try:
                if self.triggers:
                    await self.triggered()
                if self.aligned or self.climate is not None:
                    await self.send_aligned()
                if ticks_diff(ticks_ms(), self.hb_due) >= 0:
                    await self.heartbeat()
            except (CallError, CallTimeout) as e:  # the link is fine; only that answer was not
                L.warn("%s", e)
                self.hb_due = ticks_add(ticks_ms(), self.keys["HeartbeatInterval"] * 1000)
            if self.req_reset:
                await self.reset()
            now = ticks_ms()
            piv = self.keys["WebSocketPingInterval"]
            if piv > 0:
                if ticks_diff(now, self.ws.last_rx) > (piv + self.cfg["call_timeout_s"]) * 1000:
                    raise LinkDead("no pong or frame for %ds" % (piv + self.cfg["call_timeout_s"]))
                if ticks_diff(now, self.ping_due) >= 0:
                    self.ping_due = ticks_add(now, piv * 1000)
                    await self.ws.ping()
            if ticks_diff(now, last_gc) > 5000:
                gc.collect()
                last_gc = now
            await asyncio.sleep(_TICK_S)

    async def session(self):
        url = self.cfg["url"]
        if not url.endswith("/"):
            url += "/"
        url += self.station
        auth = (self.station, self.cfg["password"]) if self.cfg["password"] else None
        L.info("connecting to %s%s", url, " (basic auth)" if auth else "")
        self.dead = None
        self.ws = await ws.connect(url, PROTOCOL, auth, self.cfg["connection_timeout_s"], _MAX_FRAME,
                                   self.cfg["ca_cert"])
        if not self.ctx.wifi_up.is_set():  # Wi-Fi went while connecting
            self.dead = LinkDead("Wi-Fi lost")
        self.dt_ok = True
        self.ws.last_rx = ticks_ms()
        self.ping_due = ticks_add(ticks_ms(), self.keys["WebSocketPingInterval"] * 1000)
        self.st.links["ocpp"] = "up"
        self.was_up = True
        gc.collect()
        L.info("connected (%d bytes free)", gc.mem_free())
        task = asyncio.create_task(self.reader())
        try:
            await self.online_loop()
        finally:
            task.cancel()
            await self.ws.abort()
            self.ws = None
            self.st.links["ocpp"] = "down"
            gc.collect()

    async def idle(self, seconds):
        """Wait (link down) while the station keeps working: button, samples, status."""
        end = ticks_add(ticks_ms(), int(seconds * 1000))
        while ticks_diff(end, ticks_ms()) > 0:
            await self.tick()
            await asyncio.sleep(_TICK_S)


async def run(ctx):
    """The OCPP task: connect, serve, and on any failure back off and reconnect; forever."""
    back = Backoff(1, ctx.cfg["ocpp"]["reconnect_max_s"])
    cp = None
    while True:
        try:
            if cp is None:
                cp = ChargePoint(ctx)
                await cp.recover()
            while not ctx.wifi_up.is_set():
                await cp.idle(0.5)
            await cp.session()
        except Exception as e:
            L.warn("link down: %r", e)
        if cp is not None and cp.was_up:
            back.reset()  # a link that worked: the first retry comes quickly
            cp.was_up = False
        ctx.state.links["ocpp"] = "down"
        wait = back.next()
        L.info("reconnecting in %.1fs", wait)
        gc.collect()
        try:
            if cp is not None:
                await cp.idle(wait)
            else:
                await asyncio.sleep(wait)
        except Exception as e:
            L.error("offline work failed: %r", e)
            await asyncio.sleep(wait)
