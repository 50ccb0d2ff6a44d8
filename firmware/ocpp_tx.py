# Transactions and their messages: start (Authorize, StartTransaction), periodic MeterValues,
# stop, and the journal's delivery (oldest first, one CALL at a
# time, each removed once answered, retried per TransactionMessageAttempts/RetryInterval).
# Every message is journalled on flash before it is sent (journal.py): nothing is lost across
# link drops and power cuts. Functions of the charge point (chargepoint.ChargePoint).
import gc
import sys

import fields
import log
import ocppj
import ws
from compat import ticks_ms, ticks_diff, ticks_add
from journal import K_METER, K_START, K_STOP
from ocpp_link import CallError, CallTimeout

L = log.get("ocpp")
REFUSED = 6   # LED phases (state.blink) for a refused idTag: three blinks (rfid.py)


async def start(cp, id_tag, authorize):
    conn = cp.conn
    conn.preparing = True
    cp.st.status = "Preparing"
    try:
        await _start(cp, id_tag, authorize)
    finally:
        conn.preparing = False  # started, refused, or the link died on the way


async def _start(cp, id_tag, authorize):
    st = cp.st
    r = cp.conn.resv    # connector 1 reserved (cs_reserve.py): authz.admit checks the tag
    if cp.online():
        await cp.send_status()
    parent = None
    if authorize or r:   # the list, the cache, Authorize (authz.py, loaded for this)
        import authz
        try:
            ok, parent = await authz.admit(cp, id_tag, authorize, r)
        finally:
            for m in authz.DROP:
                sys.modules.pop(m, None)
        if ok != "Accepted":
            L.warn("idTag not authorized (%s): no transaction for %s", ok, id_tag)
            st.blink = REFUSED
            return
    ts = cp.stamp()
    meter = int(st.values[fields.ENERGY] or 0.0)
    begin = ocppj.meter_value(ts, st.reading(), cp.keys.measurands("StopTxnSampledData"),
                              "Transaction.Begin")
    info = {"tag": id_tag, "ms": meter, "b": begin, "p": parent}
    ref = cp.journal.open_tx(info)
    p = ocppj.start_transaction(1, id_tag, meter, ts)
    if r is not None:   # ended by authz.admit
        p["reservationId"] = r[0]
    cp.journal.add(K_START, cp.ids.next(), "StartTransaction", p, ref)
    info["ref"] = ref
    cp.conn.started(info)
    st.charge_wanted = True
    st.apply_relay(cp.board)
    cp.mv_due = ticks_add(ticks_ms(), cp.keys["MeterValueSampleInterval"] * 1000)
    L.info("transaction (local #%d) started for %s at %d Wh", ref, id_tag, meter)


def stop(cp, reason, tx=None):
    st = cp.st
    conn = cp.conn
    tx = tx or conn.tx
    ts = cp.stamp()
    meter = int(st.values[fields.ENERGY] or 0.0)
    if meter < tx["ms"]:
        meter = tx["ms"]
    end = ocppj.meter_value(ts, st.reading(), cp.keys.measurands("StopTxnSampledData"),
                            "Transaction.End")
    data = [tx["b"], end] if tx.get("b") else [end]
    p = ocppj.stop_transaction(0, tx["tag"], meter, ts, reason, data)
    del p["transactionId"]  # not known yet, maybe: put in when sent
    cp.journal.add(K_STOP, cp.ids.next(), "StopTransaction", p, tx["ref"])
    cp.journal.close_tx(tx["ref"])
    L.info("transaction (local #%d) stopped: %s at %d Wh", tx["ref"], reason, meter)
    if tx is conn.tx:
        conn.stopped()
        st.charge_wanted = False
        st.apply_relay(cp.board)


def sample(cp):
    """MeterValueSampleInterval: a periodic MeterValues of the running transaction, journalled."""
    iv = cp.keys["MeterValueSampleInterval"]
    now = ticks_ms()
    if iv <= 0 or ticks_diff(now, cp.mv_due) < 0:
        return
    cp.mv_due = ticks_add(cp.mv_due, iv * 1000)
    if ticks_diff(now, cp.mv_due) >= 0:  # fell behind (e.g. a long call): skip ahead
        cp.mv_due = ticks_add(now, iv * 1000)
    mv = ocppj.meter_value(cp.stamp(), cp.st.reading(), cp.keys.measurands(), "Sample.Periodic")
    cp.journal.add(K_METER, cp.ids.next(), "MeterValues", ocppj.meter_values(1, None, [mv]),
                   cp.conn.tx["ref"])


async def flush(cp):
    """Send the journal, oldest first, one CALL at a time; each removed once answered."""
    j = cp.journal
    link = cp.link
    while j.pending and link.dead is None:
        if ticks_diff(cp.retry_at, ticks_ms()) > 0:
            return
        seq, _, _, kind, ref = j.pending[0]
        tx_id = None
        if kind != K_START:
            tx_id = j.txid(ref)
            if tx_id is None:
                L.error("dropping %s #%d: its StartTransaction was never accepted", j.first()[3], seq)
                j.done(seq)
                continue
        _, _, mid, action, frame, _ = j.first(ocppj.call_frame, tx_id, ws.HEADROOM, link.buf)
        try:
            res = await link.send_call(action, mid, frame)
        except (CallError, CallTimeout) as e:
            cp.attempts += 1
            if cp.attempts >= cp.keys["TransactionMessageAttempts"]:
                L.error("giving up %s #%d after %d attempts: %s", action, seq, cp.attempts, e)
                j.done(seq)
                cp.attempts = 0
                continue
            wait = cp.keys["TransactionMessageRetryInterval"] * cp.attempts
            L.warn("%s #%d failed (%s): retry in %ds", action, seq, e, wait)
            cp.retry_at = ticks_add(ticks_ms(), wait * 1000)
            return
        cp.attempts = 0
        if kind == K_START:
            tx_id = res.get("transactionId")
            if type(tx_id) is not int:
                tx_id = 0
            j.set_txid(ref, tx_id)
            info = res.get("idTagInfo")
            tx = j.open.get(ref)    # None once stopped: its idTag is then on flash only
            tag = None
            if tx:   # its idTagInfo into the cache, as an Authorize answer's (authstore, loaded for it)
                import authstore
                tag, p = authstore.remember(tx["tag"], info, cp.keys)
                sys.modules.pop("authstore", None)
                if p:
                    tx["p"] = p   # a card of that group may stop it (authz.stops)
            elif isinstance(info, dict):
                tag = info.get("status")
            L.info("transaction (local #%d) has id %d (idTag %s)", ref, tx_id, tag)
            if tag != "Accepted" and tx and tx is cp.conn.tx and cp.keys["StopTransactionOnInvalidId"]:
                stop(cp, "DeAuthorized")
        j.done(seq)
        if kind == K_STOP:
            L.info("transaction %s closed at the central system", j.txid(ref))
    gc.collect()


async def settle(cp):
    """Before a reset: send what the journal holds and wait for the answers, ignoring the
    retry interval (a message that failed a moment ago is tried again now). No call is
    started after one call timeout, so the wait is at most two of them; the sample task
    (over-temperature) runs meanwhile. A reset with the StopTransaction unsent or
    unanswered sent it again after the reboot: the central system received it twice
    (issue 17). What is still unanswered stays journalled and is sent after the reboot."""
    j = cp.journal
    end = ticks_add(ticks_ms(), cp.cfg["call_timeout_s"] * 1000)
    try:
        while j.pending and cp.online() and ticks_diff(end, ticks_ms()) > 0:
            cp.retry_at = ticks_ms()
            await flush(cp)
        await cp.send_status()
    except Exception as e:
        L.warn("before reset: %r", e)
    if j.pending:
        L.warn("resetting with %d message(s) unanswered: sent again after the reboot", len(j.pending))
