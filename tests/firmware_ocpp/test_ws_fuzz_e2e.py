"""The firmware's WebSocket layer and OCPP-J parser under abuse, through a raw RFC 6455 server:
pings, fragments, 16-bit lengths, protocol violations (answered with the right close code and
a reconnect), a silent server (dead link found by missing pongs), refused handshakes, and a
seeded fuzz of malformed OCPP frames (a CALLERROR where due; the connection stays up)."""
import base64
import json
import random
import time

import jsonschema

from support.central import schema_for, station_config
from support.rawws import RawServer, frame, random_mask

PASSWORD = "pw-secret-7"


def clean_console(st):
    out = "\n".join(st.lines)
    assert "Traceback" not in out and PASSWORD not in out, st.tail(80)


async def probe(conn, n):
    """A harmless CALL; returns the frames that arrived before its answer."""
    mid = "probe-%d" % n
    conn.send_text(json.dumps([2, mid, "GetConfiguration", {"key": ["NumberOfConnectors"]}]))
    before = []
    while True:
        m = await conn.reply()
        if m[1] == mid:
            assert m == [3, mid, {"configurationKey": [
                {"key": "NumberOfConnectors", "readonly": True, "value": "1"}]}], m
            return before
        before.append(m)


async def reconnected(srv, st, old):
    code = await old.wait_closed()
    conn = await srv.next_conn()
    await conn.wait_calls(2)
    assert [c[2] for c in conn.calls] == ["StatusNotification"] * 2, conn.calls  # no new boot
    return code, conn


async def test_ws__handshake_ping_fragments_violations_close_and_dead_link(station):
    srv = await RawServer().start()
    st = station(station_config(srv.url, password=PASSWORD, call_timeout_s=2)).start()
    try:
        conn = await srv.next_conn()
        await conn.wait_calls(3)
        assert [c[2] for c in conn.calls] == ["BootNotification", "StatusNotification", "StatusNotification"]
        req = conn.request
        h = req["headers"]
        assert req["line"] == "GET /ocpp/CP-1 HTTP/1.1", req
        assert h["sec-websocket-protocol"] == "ocpp1.6" and h["sec-websocket-version"] == "13", h
        assert h["authorization"] == "Basic " + base64.b64encode(b"CP-1:" + PASSWORD.encode()).decode(), h
        assert len(base64.b64decode(h["sec-websocket-key"])) == 16, h

        # ping -> pong with the same payload
        conn.send(frame(9, b"hello"))
        await conn.wait_pongs(1, timeout=2)
        assert conn.pongs == [b"hello"], conn.pongs

        # a CALL in three fragments with a ping in between
        text = json.dumps([2, "frag-1", "GetConfiguration", {"key": ["HeartbeatInterval"]}])
        a, b = len(text) // 3, 2 * len(text) // 3
        conn.send(frame(1, text[:a], fin=False))
        conn.send(frame(9, b"mid"))
        conn.send(frame(0, text[a:b], fin=False))
        conn.send(frame(0, text[b:], fin=True))
        assert await conn.reply() == [3, "frag-1", {"configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "60"}]}]
        # a 16-bit length frame (3 KB), then a binary frame (ignored), still up
        conn.send_text(json.dumps([2, "big-1", "DataTransfer", {"vendorId": "acme", "data": "x" * 3000}]))
        assert await conn.reply() == [3, "big-1", {"status": "UnknownVendorId"}]
        conn.send(frame(2, b"\x00\x01"))
        assert await probe(conn, 1) == []
        assert conn.unmasked == 0 and srv.count == 1

        # protocol violations: the station closes with the right code, then reconnects
        violations = [
            (frame(1, json.dumps([2, "huge", "DataTransfer", {"vendorId": "v", "data": "y" * 9000}])), 1009),
            (frame(1, b"z" * 70000), 1009),                     # 64-bit length, over the limit
            (frame(1, "[]", mask=random_mask()), 1002),         # server frames must not be masked
            (frame(1, "[]", rsv=4), 1002),                      # reserved bit without an extension
            (frame(3, b"??"), 1002),                            # unknown opcode
            (frame(9, b"p" * 126), 1002),                       # control frame over 125 bytes
            (frame(9, b"p", fin=False), 1002),                  # fragmented control frame
            (frame(0, b"orphan"), 1002),                        # continuation without a message
            (frame(1, "[", fin=False) + frame(0, " ", fin=False) * 70, 1009),  # too many fragments
            (frame(1, b"\xff\xfe\xfd"), 1007),                  # text that is not UTF-8
            (frame(8, b"\x03\xe8bye"), 1000),                   # the server closes: echoed
        ]
        for raw, code in violations:
            conn.send(raw)
            got, conn = await reconnected(srv, st, conn)
            assert got == code, (raw[:12], got, st.tail(10))
        assert srv.count == 1 + len(violations)

        # a silent server: no pongs, no answers -> the station declares the link dead
        conn.send_text(json.dumps([2, "cfg-1", "ChangeConfiguration",
                                   {"key": "WebSocketPingInterval", "value": "1"}]))
        assert await conn.reply() == [3, "cfg-1", {"status": "Accepted"}]
        conn.answering = False
        t0 = time.monotonic()
        await conn.wait_closed(timeout=15)
        assert time.monotonic() - t0 < 8, "dead link found too late"
        await st.aexpect("no pong or frame for 3s")
        conn = await srv.next_conn()
        await conn.wait_calls(2)
        assert await probe(conn, 2) == []
        assert st.proc.poll() is None
        clean_console(st)
    finally:
        st.stop()
        await srv.stop()


SAFE_ACTIONS = ["GetConfiguration", "ClearCache", "UnlockConnector", "DataTransfer",
                "RemoteStopTransaction", "GetDiagnostics", "ReserveNow", "Coffee", "heartbeat"]
FUZZ_KEYS = ["idTag", "connectorId", "key", "vendorId", "data", "messageId", "transactionId",
             "type", "x"]
FUZZ_VALUES = [1, -5, 0, "s", "", None, [], {}, ["a"], [1], True, 1.5, "x" * 60, 2 ** 40]


def fuzz_frame(rng, i):
    """(text, expectation): "-1" (CALLERROR with id -1), "err" (CALLERROR with our id),
    "reply" (CALLRESULT or CALLERROR with our id), "none" (no answer at all)."""
    mid = "f%d" % i
    k = rng.randrange(8)
    if k == 0:
        return "".join(rng.choice("[]{}\",:0123 abc\\ntrue") for _ in range(rng.randrange(1, 40))), "maybe"
    if k == 1:
        full = json.dumps([2, mid, "Heartbeat", {"a": [1, 2, {"b": "c"}]}])
        return full[:rng.randrange(1, len(full) - 1)], "-1"
    if k == 2:
        payload = {rng.choice(FUZZ_KEYS): rng.choice(FUZZ_VALUES) for _ in range(rng.randrange(0, 4))}
        return json.dumps([2, mid, rng.choice(SAFE_ACTIONS), payload]), "reply"
    if k == 3:
        return json.dumps([rng.choice([0, 1, 5, 9, -1, "2", None, 2.5]), mid, "Heartbeat", {}]), "err"
    if k == 4:
        return json.dumps(rng.choice([[3, mid, {}], [4, mid, "GenericError", "", {}]])), "none"
    if k == 5:
        return json.dumps(rng.choice([{"a": 1}, 7, "str", None, [], [2], {"2": mid}])), "-1"
    if k == 6:
        return json.dumps([2, rng.choice([7, "", "x" * 37, None, [mid]]), "Heartbeat", {}]), "-1"
    depth = rng.randrange(50, 3000)
    return "[" * depth + "]" * rng.choice([0, depth]), "maybe"


async def test_fuzz__malformed_ocpp_frames_get_callerrors_and_the_link_stays_up(station):
    srv = await RawServer().start()
    st = station(station_config(srv.url)).start()
    rng = random.Random(20261125)
    codes = {"FormationViolation", "ProtocolError", "TypeConstraintViolation",
             "PropertyConstraintViolation", "NotImplemented"}
    tally = {}
    try:
        conn = await srv.next_conn()
        await conn.wait_calls(3)
        for i in range(250):
            text, expect = fuzz_frame(rng, i)
            conn.send_text(text)
            got = await probe(conn, i)
            tally[expect] = tally.get(expect, 0) + 1
            what = "frame %d %r -> %r" % (i, text[:80], got)
            if expect == "none":
                assert got == [], what
            elif expect in ("-1", "err"):
                mid = "-1" if expect == "-1" else "f%d" % i
                assert len(got) == 1 and got[0][:2] == [4, mid] and got[0][2] in codes, what
            elif expect == "maybe":  # random text: whatever it is, never more than one answer
                assert len(got) <= 1 and (not got or (got[0][0] == 4 and got[0][2] in codes)), what
            else:
                assert len(got) == 1 and got[0][1] == "f%d" % i, what
                action = json.loads(text)[2]
                if got[0][0] == 3:
                    jsonschema.validate(got[0][2], schema_for(action, True))
                else:
                    assert got[0][2] in codes, what
                    if action not in SAFE_ACTIONS[:7]:   # the first seven are implemented
                        assert got[0][2] == "NotImplemented", what
        assert srv.count == 1 and st.proc.poll() is None, "the connection must stay up"
        assert all(tally.get(k, 0) > 10 for k in ("-1", "err", "reply", "none")), tally
        clean_console(st)
    finally:
        st.stop()
        await srv.stop()


async def test_handshake__refused_subprotocol_and_credentials_back_off(station):
    srv = await RawServer(protocol=None).start()
    st = station(station_config(srv.url, password=PASSWORD, reconnect_max_s=2)).start()
    try:
        await st.aexpect("did not agree to subprotocol ocpp1.6 (answered None)")
        await st.aexpect("[ocpp] I: reconnecting in")
        await st.aexpect("did not agree to subprotocol ocpp1.6")
        t = [time.monotonic()]
        srv.status = 401
        await st.aexpect("refused the credentials (HTTP 401): check ocpp.password")
        t.append(time.monotonic())
        await st.aexpect("refused the credentials (HTTP 401)")
        t.append(time.monotonic())
        # backoff: never a tight loop (at least 0.5 s between tries, at most the 2 s cap + jitter)
        assert 4 <= len(srv.requests) <= 6, len(srv.requests)
        assert all(0.3 < b - a < 3.5 for a, b in zip(t, t[1:])), t
        clean_console(st)
    finally:
        st.stop()
        await srv.stop()
