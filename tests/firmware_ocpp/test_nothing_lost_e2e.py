"""Nothing lost, nothing duplicated: the central system killed and restarted mid-transaction,
the board power-cycled mid-transaction (SIGKILL, restart on the same flash), Wi-Fi lost
mid-transaction, and a transaction that starts and stops while the central system is
unreachable."""
import json

from ocpp.v16 import call

from support.central import sampled, station_config, ts, validate_outgoing


def meter_times(*systems, tx_id=1001):
    out = []
    for cs in systems:
        for m in cs.calls("MeterValues"):
            assert m[3]["transactionId"] == tx_id, m
            out.append(ts(m[3]["meterValue"][0]["timestamp"]))
    return out


def check_continuous(times, interval=1.0):
    """Samples every `interval` s with no gap (nothing lost) and no repeat (nothing duplicated)."""
    assert times == sorted(times) and len(set(times)) == len(times), times
    gaps = [round(b - a, 2) for a, b in zip(times, times[1:])]
    assert all(0.5 * interval <= g <= 1.6 * interval for g in gaps), gaps


async def wait_answered(cs, action, n, station):
    """Wait until the central system has answered the n-th `action` CALL."""
    m = await cs.wait_call(action, n, station=station)
    await cs.wait_for(lambda d, r: d == "cs" and r[0] == 3 and r[1] == m[1], station=station,
                      what="answer to %s #%d" % (action, n))
    return m


async def test_central_system_restart__mid_transaction_no_message_lost_or_duplicated(station, central):
    cs = await central(heartbeat=60)
    st = station(station_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    assert (await cs.call(call.RemoteStartTransaction(id_tag="TAG-K"))).status == "Accepted"
    await wait_answered(cs, "MeterValues", 3, st)
    await cs.stop()                      # killed right after answering the 3rd sample
    await st.aexpect("[ocpp] W: link down")
    for _ in range(4):                   # ~4 samples journalled while the central system is down
        await st.aexpect("[meter] I:")
    cs2 = await central(port=cs.port, heartbeat=60)
    await st.aexpect("[ocpp] I: connected", timeout=15)
    n = 3 + 4
    await cs2.wait_call("MeterValues", n - 3, station=st)
    assert cs2.calls("BootNotification") == [], cs2.actions()  # a reconnect is not a reboot
    assert (await cs2.call(call.RemoteStopTransaction(transaction_id=1001))).status == "Accepted"
    stop = await cs2.wait_call("StopTransaction", station=st)
    assert stop[3]["transactionId"] == 1001 and stop[3]["reason"] == "Remote", stop

    times = meter_times(cs, cs2)
    assert len(times) >= n, times
    check_continuous(times)
    ids = [m[1] for c in (cs, cs2) for m in c.calls()]
    assert len(ids) == len(set(ids)), ids
    # the queued samples came first, in order, before anything else of the new connection
    acts = cs2.actions()
    assert acts[:n - 3] == ["MeterValues"] * (n - 3), acts
    e = [sampled(m[3]["meterValue"][0])["Energy.Active.Import.Register"]
         for c in (cs, cs2) for m in c.calls("MeterValues")]
    assert e == sorted(e), e
    assert validate_outgoing(cs.frames) and validate_outgoing(cs2.frames)


async def test_power_cycle__mid_transaction_offline_journal_replayed_and_stopped_powerloss(station, central):
    cs = await central(heartbeat=60)
    st = station(station_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    assert (await cs.call(call.RemoteStartTransaction(id_tag="TAG-P"))).status == "Accepted"
    await wait_answered(cs, "MeterValues", 2, st)
    await cs.stop()
    await st.aexpect("[ocpp] W: link down")
    for _ in range(3):                   # samples journalled on flash, unsent
        await st.aexpect("[meter] I:")
    st.kill()                            # power cut in the middle of the transaction
    journal = (st.flash / "ocpp_journal.log").read_text()
    assert journal.count("|MeterValues|") >= 2, journal

    cs2 = await central(port=cs.port, heartbeat=60)
    st.start()                           # power back, same flash
    await st.aexpect("[ocpp] I: transaction (local #1) was open at power loss")
    stop = await cs2.wait_call("StopTransaction", station=st)
    acts = cs2.actions()
    k = acts.index("StopTransaction")
    assert acts[0] == "BootNotification" and acts[1:k] == ["MeterValues"] * (k - 1) and k >= 3, acts
    p = stop[3]
    assert p["transactionId"] == 1001 and p["reason"] == "PowerLoss" and p["idTag"] == "TAG-P", p
    times = meter_times(cs, cs2)
    check_continuous(times)
    e = [sampled(m[3]["meterValue"][0])["Energy.Active.Import.Register"] for m in cs2.calls("MeterValues")]
    last_e, step = e[-1], e[-1] - e[-2]
    # the register was saved on flash at least every 1 Wh: meterStop is within 1 Wh of the last
    # sample, or of the one after it when the cut came between the register's save and that
    # sample's journal write (the test cuts right after a sample's console line)
    assert int(last_e) - 1 <= p["meterStop"] <= last_e + step + 1, (p, e)
    await cs2.wait_for(lambda d, m: d == "cp" and m[0] == 2 and m[2] == "StatusNotification"
                       and m[3]["connectorId"] == 1 and m[3]["status"] == "Available",
                       station=st, what="Available after recovery")
    assert "[board] I: relay closed" not in "\n".join(st.lines), st.tail()
    ids = [m[1] for c in (cs, cs2) for m in c.calls()]
    assert len(ids) == len(set(ids)), ids
    assert validate_outgoing(cs2.frames)
    # a second power cycle: the journal is settled, nothing is sent twice
    st.stop()
    cs3 = await central(heartbeat=60)
    cfg = station_config(cs3.url)
    (st.flash / "config.json").write_text(json.dumps(cfg))
    st.start()
    await cs3.wait_call("StatusNotification", 2, station=st)
    for _ in range(2):                   # two samples: a replay would have gone out by now
        await st.aexpect("[meter] I:")
    assert [a for a in cs3.actions() if a != "Heartbeat"] == [
        "BootNotification", "StatusNotification", "StatusNotification"], cs3.actions()


async def test_offline_transaction__stop_carries_the_id_assigned_after_reconnect(station, central):
    cs = await central(heartbeat=60)
    # button pressed at 5 s (start) and 9 s (stop), while the central system is down
    st = station(station_config(cs.url), scenario={"button": [[5.0, 5.5], [9.0, 9.5]]}).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    await cs.stop()
    await st.aexpect("[ocpp] I: transaction (local #1) started for LOCAL-TAG", timeout=15)
    await st.aexpect("[ocpp] I: transaction (local #1) stopped: Local", timeout=15)
    cs2 = await central(port=cs.port, heartbeat=60)
    cs2.next_tx = 4710
    stop = await cs2.wait_call("StopTransaction", station=st)
    acts = [a for a in cs2.actions() if a != "Heartbeat"]
    k = acts.index("StopTransaction")
    assert acts[0] == "StartTransaction" and acts[1:k] == ["MeterValues"] * (k - 1) and k >= 3, acts
    start = cs2.calls("StartTransaction")[0]
    assert start[3]["idTag"] == "LOCAL-TAG" and start[3]["meterStart"] == 0, start
    assert cs2.calls("Authorize") == [], "offline start is authorized locally"
    assert stop[3]["transactionId"] == 4711 and stop[3]["reason"] == "Local", stop
    assert meter_times(cs2, tx_id=4711)
    check_continuous(meter_times(cs2, tx_id=4711))
    # the timestamps tell when things happened (offline), not when they were delivered
    assert ts(start[3]["timestamp"]) < ts(stop[3]["timestamp"]) - 3, (start, stop)
    assert validate_outgoing(cs2.frames)


async def test_retries__transaction_messages_follow_attempts_and_retry_interval(station, central):
    cs = await central(heartbeat=60)
    st = station(station_config(cs.url, meter_interval_s=4)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    for k, v in (("TransactionMessageAttempts", "3"), ("TransactionMessageRetryInterval", "1")):
        assert (await cs.call(call.ChangeConfiguration(key=k, value=v))).status == "Accepted"
    cs.fail["MeterValues"] = 4
    assert (await cs.call(call.RemoteStartTransaction(id_tag="TAG-RT"))).status == "Accepted"
    # sample A fails 3 times (then it is given up), sample B fails once, then is delivered
    await cs.wait_call("MeterValues", 5, station=st, timeout=30)
    await cs.wait_for(lambda d, m: len([1 for d2, m2 in cs.frames if d2 == "cs" and m2[0] in (3, 4) and m2[1] in {
        c[1] for c in cs.calls("MeterValues")}]) >= 5, station=st, what="answers to 5 MeterValues")
    mids = [m[1] for m in cs.calls("MeterValues")][:5]
    a, b = mids[0], mids[3]
    assert mids == [a, a, a, b, b] and a != b, mids  # a retry keeps its message id
    answers = [m[0] for d, m in cs.frames if d == "cs" and m[0] in (3, 4) and m[1] in (a, b)]
    assert answers == [4, 4, 4, 4, 3], answers
    await st.aexpect("giving up MeterValues")
    # the wait grows with the attempt: 1 s, then 2 s (TransactionMessageRetryInterval x attempt)
    waits = [line.rsplit("retry in ", 1)[1] for line in st.lines if "failed (" in line and "retry in" in line]
    assert waits[:3] == ["1s", "2s", "1s"], waits


async def test_wifi_drop__mid_transaction_closes_the_link_reconnects_and_replays_in_order(station, central):
    cs = await central(heartbeat=60)
    # button at 3 s (start) and 18 s (stop); the board's Wi-Fi is gone from 8 s to 12 s
    sc = {"button": [[3.0, 3.5], [18.0, 18.5]], "wifi": {"drops": [[8, 12]], "connect_s": 0.2}}
    st = station(station_config(cs.url), scenario=sc).start()
    await cs.wait_call("StartTransaction", station=st)
    await st.aexpect("[wifi] W: link lost", timeout=15)
    await st.aexpect("[ocpp] W: link down: Wi-Fi lost", timeout=5)
    await st.aexpect("[wifi] I: up", timeout=15)
    await st.aexpect("[ocpp] I: connected", timeout=15)
    stop = await cs.wait_call("StopTransaction", timeout=30, station=st)
    await cs.wait_for(lambda d, m: d == "cs" and m[0] == 3 and m[1] == stop[1], station=st)

    # the central system saw the station go (no close frame: the radio is gone) and come back
    assert len(cs.conns) == 2 and cs.paths == ["/ocpp/CP-1"] * 2, cs.paths
    assert cs.closed[0][0] <= cs.opened[1] and cs.closed[0][1] == 1006, (cs.closed, cs.opened)
    assert len(cs.calls("BootNotification")) == 1, "a reconnect is not a reboot"
    # every transaction message once, in order: Start, the samples (those journalled while
    # offline first on the new connection), Stop
    first = [m for d, m in cs.frames[:cs.opened[1]] if d == "cp" and m[0] == 2]
    second = [m for d, m in cs.frames[cs.opened[1]:] if d == "cp" and m[0] == 2]
    tx = ("StartTransaction", "MeterValues", "StopTransaction")
    sent = [m for m in first + second if m[2] in tx]
    ids = [m[1] for m in sent]
    # at-least-once: only a CALL in flight when the radio went may come again, with its id
    if len(ids) != len(set(ids)):
        assert ids.count(first[-1][1]) == 2 and second[0][1] == first[-1][1], ids
        sent.remove(second[0])
    acts = [m[2] for m in sent]
    assert acts == ["StartTransaction"] + ["MeterValues"] * (len(acts) - 2) + ["StopTransaction"], acts
    k = next(i for i, m in enumerate(second) if m[2] != "MeterValues")
    assert k >= 3, [m[2] for m in second]  # the drop's samples went first after the reconnect
    times = meter_times(cs)
    assert len(times) >= 10, times
    check_continuous(times)
    assert stop[3]["transactionId"] == 1001 and stop[3]["reason"] == "Local", stop
    assert ts(sent[0][3]["timestamp"]) < times[0] and times[-1] <= ts(stop[3]["timestamp"]), (sent[0], stop)
    assert validate_outgoing(cs.frames)
