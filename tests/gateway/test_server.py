"""The gateway's edge through its real port (gateway/server.py, web.py on aiohttp): files outside
the static folder, Host names, bodies too large or too slow, half-sent requests by the
hundred, the connection cap, pipelined requests. Each is a finding of issue 10."""
import asyncio
import json
import os

from support.gwhttp import TEST_TOKEN, http

AUTH = b"Authorization: Bearer " + TEST_TOKEN.encode() + b"\r\n"


async def raw(port, data, read=True, timeout=10):
    """The whole answer (until the server closes, or `timeout`) to `data` sent as it is."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(data)
    await w.drain()
    try:
        return await asyncio.wait_for(r.read(), timeout) if read else (r, w)
    finally:
        if read:
            w.close()


def get(path, host=b"127.0.0.1", extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n" + extra + b"\r\n"


async def test_server__static_files_come_only_from_the_static_folder(gateway, tmp_path):
    gw = await gateway()
    secret = tmp_path / "secret.txt"
    secret.write_text("do-not-serve-me\n")
    for path in (b"/static//etc/hostname", b"/static/%2Fetc%2Fhostname", b"/static/../gateway/api.py",
                 b"/static/..%2Fapi.py", b"/static/%2E%2E/api.py", b"/static//" + str(secret).encode(),
                 b"/static/" + os.path.relpath(secret, gw.settings.db).encode(), b"/static/.hidden",
                 b"/static//proc/self/environ"):
        out = await raw(gw.port, get(path))
        assert out.startswith(b"HTTP/1.1 404 "), (path, out[:300])
        assert b"do-not-serve-me" not in out and b"PICOCHARGE" not in out, (path, out[:300])
    out = await raw(gw.port, get(b"/static/app.js"))
    assert out.startswith(b"HTTP/1.1 200 ") and b"Cache-Control: no-cache" in out, out[:300]


async def test_server__host_names_not_served_are_refused_but_stations_connect_by_any(gateway):
    gw = await gateway(allowed_hosts=("gw.example.net",))
    for host, status in ((b"evil.example", b"421"), (b"127.0.0.1:%d" % gw.port, b"200"),
                         (b"localhost", b"200"), (b"[::1]:9000", b"200"), (b"gw.example.net:80", b"200"),
                         (b"127.0.0.1.evil.example", b"421")):
        out = await raw(gw.port, get(b"/api/stations", host, AUTH))
        assert out.startswith(b"HTTP/1.1 " + status), (host, out[:300])
    out = await raw(gw.port, get(b"/api/stations", b"evil.example", AUTH))
    assert b"--allowed-hosts" in out, out
    # ingest and the OCPP endpoint are reached by the gateway's address, whatever its name
    out = await raw(gw.port, get(b"/update?api_key=nope&field1=1", b"192.168.1.5:9000"))
    assert out.startswith(b"HTTP/1.1 401 "), out[:300]


async def test_server__json_bodies_only_as_application_json(gateway):
    gw = await gateway()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        s, out = await http(gw, "POST", "/api/id-tags", raw=b'{"id_tag": "T1"}',
                            headers={"Authorization": "Bearer " + TEST_TOKEN, "Content-Type": ctype})
        assert (s, out) == (415, {"error": "send the body as Content-Type: application/json"}), (ctype, s, out)
    assert gw.id_tags == {}, gw.id_tags


async def test_server__oversized_and_slow_bodies_are_refused(gateway):
    gw = await gateway(max_body=4096, body_timeout=0.5)
    body = b'{"id_tag": "%s"}' % (b"x" * 5000)
    out = await raw(gw.port, b"POST /api/id-tags HTTP/1.1\r\nHost: 127.0.0.1\r\n" + AUTH +
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert out.startswith(b"HTTP/1.1 413 ") and b"body too large (at most 4096 bytes)" in out, out[:300]
    # a body announced and sent slowly: 408 once --body-timeout has passed, and the connection closed
    r, w = await raw(gw.port, b"POST /api/id-tags HTTP/1.1\r\nHost: 127.0.0.1\r\n" + AUTH +
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{", read=False)
    out = await asyncio.wait_for(r.read(), 10)
    w.close()
    assert out.startswith(b"HTTP/1.1 408 ") and b"--body-timeout" in out, out[:300]
    # a head past the line limit
    out = await raw(gw.port, get(b"/" + b"a" * 9000))
    assert out.split(b" ", 2)[1] == b"400" and b"Got more than 8190 bytes" in out, out[:300]


async def test_server__half_sent_requests_do_not_stop_healthz_and_are_closed_when_idle(gateway):
    gw = await gateway(idle_timeout=1.5)
    conns = []
    for _ in range(300):
        r, w = await raw(gw.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", read=False)
        conns.append((r, w))
    s, out = await asyncio.wait_for(http(gw, "GET", "/healthz"), 5)
    assert s == 200 and out["status"] == "ok", out
    # every half-sent one is closed by the gateway once --idle-timeout has passed
    got = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _w in conns)), 20)
    assert all(g == b"" for g in got), [g for g in got if g][:3]
    for _r, w in conns:
        w.close()


async def test_server__connections_past_the_cap_get_a_clear_503(gateway):
    gw = await gateway(max_connections=20, idle_timeout=30)
    held = [await raw(gw.port, b"", read=False) for _ in range(20)]
    await asyncio.sleep(0.2)
    out = await raw(gw.port, get(b"/healthz"))
    assert out.startswith(b"HTTP/1.1 503 ") and b"--max-connections" in out, out[:300]
    for _r, w in held:
        w.close()
    for _ in range(50):     # the gateway sees them close, and serves again
        await asyncio.sleep(0.1)
        out = await raw(gw.port, get(b"/healthz"))
        if out.startswith(b"HTTP/1.1 200 "):
            break
    assert out.startswith(b"HTTP/1.1 200 "), out[:300]
    s, m = await http(gw, "GET", "/metrics")
    assert "picocharge_http_refused_total 1.0" in m, m


async def test_server__pipelined_requests_are_answered_in_order_without_unbounded_buffering(gateway):
    gw = await gateway()
    one = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    r, w = await raw(gw.port, one * 100 + get(b"/healthz"), read=False)
    out = await asyncio.wait_for(r.read(), 20)
    w.close()
    assert out.count(b"HTTP/1.1 200 ") == 101, out[:300]
    assert json.loads(out.rsplit(b"\r\n\r\n", 1)[1])["status"] == "ok"


async def test_server__under_a_low_open_file_limit_a_flood_gets_503s_not_accept_errors(tmp_path):
    """300 half-sent requests against a gateway allowed 256 open files: the connection cap is
    lowered below the limit (with a warning), the connections past it get the 503, the half-sent
    ones are closed after --idle-timeout, and then /healthz answers; accept() never fails."""
    import resource
    import subprocess
    import sys

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.Popen([sys.executable, "-m", "picocharge.cli", "gateway", "--port", "0", "--db",
                             str(tmp_path / "gw.db"), "--thingspeak-url", "", "--idle-timeout", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=low_limit)
    lines = []
    try:
        while True:
            line = (await asyncio.to_thread(proc.stdout.readline)).decode()
            assert line, "".join(lines)
            lines.append(line)
            if line.startswith("gateway listening on"):
                port = int(line.rsplit(":", 1)[1])
                break
        conns = []
        for _ in range(300):
            conns.append(await raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", read=False))
        answers = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _w in conns)), 30)
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
        closed_idle = [a for a in answers if a == b""]
        assert len(refused) + len(closed_idle) == 300 and len(refused) >= 300 - 128, \
            (len(refused), len(closed_idle), [a[:80] for a in answers if a and not a.startswith(b"HTTP/1.1 503")][:3])
        for _r, w in conns:
            w.close()
        s, out = await asyncio.wait_for(http(port, "GET", "/healthz"), 10)
        assert s == 200 and out["status"] == "ok", out
    finally:
        proc.terminate()
        rest = await asyncio.to_thread(proc.communicate, None, 20)
        lines.append(rest[0].decode())
    log = "".join(lines)
    assert "--max-connections 20000 lowered to 128: the open-file limit is 256" in log, log[-3000:]
    assert "accept" not in log.lower() and "Traceback" not in log, log[-3000:]


async def test_server__a_websocket_anywhere_but_ocpp_is_refused_with_the_endpoint_named(gateway):
    import websockets
    gw = await gateway()
    for path in ("/", "/api/stations", "/ocpp"):
        try:
            await websockets.connect("ws://127.0.0.1:%d%s" % (gw.port, path), subprotocols=["ocpp1.6"])
        except websockets.InvalidStatus as e:
            assert e.response.status_code == 404, (path, e.response)
            assert b"ws://HOST:PORT/ocpp/<station-id>" in e.response.body, (path, e.response.body)
        else:
            raise AssertionError("%s: upgraded" % path)


async def test_server__healthz_answers_503_with_the_reason_while_the_store_cannot_write(gateway):
    """The contract with the store (issue 10, part B): `Store.error` says why writes fail."""
    gw = await gateway()
    s, out = await http(gw, "GET", "/healthz", headers={})
    assert (s, out["status"]) == (200, "ok"), out
    gw.store.error = "database or disk is full"
    try:
        s, out = await http(gw, "GET", "/healthz", headers={})
        assert (s, out["status"], out["store_error"]) == (503, "error", "database or disk is full"), out
    finally:
        gw.store.error = None
