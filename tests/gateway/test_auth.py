"""Credentials at the gateway's edge (gateway/auth.py): the admin token made at first start (0600,
hashed), `picocharge gateway token ...`, dashboard sessions with CSRF, the failed-auth slow-down
for API tokens and station passwords, the cap on pending stations."""
import json
import os
import stat
import subprocess
import sys

import pytest
import websockets
from click.testing import CliRunner

from support.gwhttp import TEST_TOKEN, basic, http
from picocharge.gateway.app import STATION_401
from picocharge.gateway.cli import gateway as gateway_cli


async def test_auth__first_start_makes_an_admin_token_kept_hashed_in_a_0600_file(gateway, tmp_path):
    gw = await gateway(api_token=None)
    tok = gw.first_token
    assert tok and tok.startswith("pct_") and len(tok) > 40, tok
    path = gw.tokens.path
    assert path == gw.settings.db + ".tokens"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
    text = open(path).read()
    assert tok not in text and tok[4:] not in text, text
    rows = json.loads(text)
    assert [(r["id"], r["role"]) for r in rows] == [("t1", "admin")], rows
    s, out = await http(gw, "POST", "/api/id-tags", {"id_tag": "T1"}, headers={"Authorization": "Bearer " + tok})
    assert s == 201, out
    await gw.stop()
    gw2 = await gateway(api_token=None)     # the second start makes none
    assert gw2.first_token is None and len(gw2.tokens.rows()) == 1


def test_auth__token_cli_creates_lists_and_revokes(tmp_path):
    db = str(tmp_path / "gw.db")
    run = CliRunner().invoke
    r = run(gateway_cli, ["token", "create", "--role", "operate", "--name", "night shift", "--db", db, "--json"])
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)
    assert made["role"] == "operate" and made["name"] == "night shift" and made["token"].startswith("pct_"), made
    assert "sha256" not in made
    r = run(gateway_cli, ["token", "list", "--db", db, "--json"])
    rows = json.loads(r.output)
    assert [(x["id"], x["role"], x["name"]) for x in rows] == [("t1", "operate", "night shift")], rows
    assert made["token"] not in r.output
    r = run(gateway_cli, ["token", "create", "--role", "boss", "--db", db])
    assert r.exit_code == 2 and "boss" in r.output, r.output
    r = run(gateway_cli, ["token", "revoke", "t1", "--db", db])
    assert r.exit_code == 0 and "token t1 revoked" in r.output, r.output
    r = run(gateway_cli, ["token", "revoke", "t1", "--db", db])
    assert r.exit_code == 1 and "no token t1" in r.output, r.output
    assert stat.S_IMODE(os.stat(db + ".tokens").st_mode) == 0o600


async def test_auth__dashboard_session_cookie_needs_its_csrf_header_for_writes(gateway):
    gw = await gateway()
    s, out = await http(gw, "POST", "/api/session", {"token": "wrong"}, headers={})
    assert s == 401, out
    tok, _ = gw.tokens.create("operate", "dashboard")
    import urllib.request
    req = urllib.request.Request("http://127.0.0.1:%d/api/session" % gw.port, method="POST",
                                 data=json.dumps({"token": tok}).encode(),
                                 headers={"Content-Type": "application/json"})
    import asyncio
    resp = await asyncio.to_thread(urllib.request.urlopen, req, timeout=10)
    cookie = resp.headers["Set-Cookie"]
    body = json.loads(resp.read())
    assert body["role"] == "operate" and len(body["csrf"]) > 30, body
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie, cookie
    c = cookie.split(";", 1)[0]
    s, out = await http(gw, "GET", "/api/stations", headers={"Cookie": c})
    assert (s, out) == (200, []), out
    s, out = await http(gw, "POST", "/api/id-tags", {"id_tag": "T1"}, headers={"Cookie": c})
    assert s == 403 and "X-CSRF-Token" in out["error"], out
    s, out = await http(gw, "POST", "/api/id-tags", {"id_tag": "T1"},
                        headers={"Cookie": c, "X-CSRF-Token": body["csrf"]})
    assert s == 201, out
    # a session dies with its token
    tid = [r["id"] for r in gw.tokens.rows() if r["name"] == "dashboard"][0]
    tok2, _ = gw.tokens.create("read", "second dashboard")
    assert gw.tokens.revoke(tid)
    s, out = await http(gw, "GET", "/api/stations", headers={"Cookie": c})
    assert s == 401, out
    c2 = await _sign_in(gw, tok2)
    s, out = await http(gw, "GET", "/api/stations", headers={"Cookie": c2})
    assert s == 200, out
    c = c2
    s, out = await http(gw, "DELETE", "/api/session", headers={"Cookie": c})
    s, out = await http(gw, "GET", "/api/stations", headers={"Cookie": c})
    assert s == 401, out


async def _sign_in(gw, tok):
    import asyncio
    import urllib.request
    req = urllib.request.Request("http://127.0.0.1:%d/api/session" % gw.port, method="POST",
                                 data=json.dumps({"token": tok}).encode(),
                                 headers={"Content-Type": "application/json"})
    resp = await asyncio.to_thread(urllib.request.urlopen, req, timeout=10)
    return resp.headers["Set-Cookie"].split(";", 1)[0]


async def test_auth__wrong_api_tokens_are_slowed_down_per_address(gateway):
    gw = await gateway(auth_fail_limit=5)
    for i in range(5):
        s, out = await http(gw, "GET", "/api/stations", headers={"Authorization": "Bearer guess-%d" % i})
        assert s == 401, out
    s, out = await http(gw, "GET", "/api/stations", headers={"Authorization": "Bearer " + TEST_TOKEN})
    assert s == 429 and "try again in" in out["error"], out


async def test_auth__station_passwords_are_slowed_down_and_refused_alike(gateway):
    gw = await gateway(auth="password", auth_fail_limit=3)
    await gw.register("CP-1", "right-password-1")
    await gw.register("CP-2", "right-password-2")
    url = "ws://127.0.0.1:%d/ocpp/" % gw.port
    answers = []
    for sid, pw in (("CP-1", "wrong-1"), ("CP-NOPE", "whatever-1"), ("CP-1", "wrong-2"), ("CP-1", "wrong-3")):
        with pytest.raises(websockets.InvalidStatus) as e:
            await websockets.connect(url + sid, subprotocols=["ocpp1.6"], additional_headers=basic(sid, pw))
        answers.append((e.value.response.status_code, e.value.response.body.decode()))
    assert answers == [(401, STATION_401 + "\n")] * 4, answers
    # three failures for CP-1 (its id) in a minute: even the right password waits; another
    # station from the same address (a NAT) still gets in, up to 10 times the limit per address
    async with websockets.connect(url + "CP-2", subprotocols=["ocpp1.6"],
                                  additional_headers=basic("CP-2", "right-password-2")):
        pass
    for i in range(2):   # 2 + 1 (CP-NOPE) + ... failures for other ids: the address is not blocked yet
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(url + "CP-X%d" % i, subprotocols=["ocpp1.6"],
                                     additional_headers=basic("CP-X%d" % i, "guess-pass"))
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect(url + "CP-1", subprotocols=["ocpp1.6"],
                                 additional_headers=basic("CP-1", "right-password-1"))
    assert e.value.response.status_code == 429, e.value.response
    gw.throttle.clock = lambda: 1e12       # a minute (and more) later
    async with websockets.connect(url + "CP-1", subprotocols=["ocpp1.6"],
                                  additional_headers=basic("CP-1", "right-password-1")):
        pass


async def test_auth__pending_stations_are_capped(gateway):
    gw = await gateway(auth="pending", max_pending=2)
    url = "ws://127.0.0.1:%d/ocpp/" % gw.port
    for sid in ("CP-P1", "CP-P2"):
        async with websockets.connect(url + sid, subprotocols=["ocpp1.6"],
                                      additional_headers=basic(sid, "pending-pass-1")):
            pass
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect(url + "CP-P3", subprotocols=["ocpp1.6"],
                                 additional_headers=basic("CP-P3", "pending-pass-1"))
    assert e.value.response.status_code == 503 and b"--max-pending" in e.value.response.body, e.value.response
    assert sorted(gw.stations) == ["CP-P1", "CP-P2"]


def test_auth__gateway_command_prints_the_first_token_once(tmp_path):
    db = str(tmp_path / "gw.db")
    env = {k: v for k, v in os.environ.items() if k != "PICOCHARGE_GATEWAY_API_TOKEN"}
    p = subprocess.Popen([sys.executable, "-m", "picocharge.cli", "gateway", "--port", "0", "--db", db,
                          "--thingspeak-url", ""], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    lines = []
    try:
        for raw in p.stdout:
            lines.append(raw.decode())
            if raw.startswith(b"dashboard sign-in:"):
                break
    finally:
        p.terminate()
        p.wait(10)
    out = "".join(lines)
    tok = [ln.rsplit(": ", 1)[1].strip() for ln in lines if ln.startswith("admin API token")]
    assert tok and tok[0].startswith("pct_"), out
    assert sum(tok[0] in ln for ln in lines) == 2, out     # the token line and the sign-in link, nowhere else


def test_auth__throttle_holds_an_id_to_the_limit_and_an_address_to_ten_times_it():
    from picocharge.gateway.auth import Throttle
    now = [0.0]
    t = Throttle(limit=3, window=60, clock=lambda: now[0])
    for i in range(3):
        assert t.blocked(("ocpp", "10.0.0.1"), ("ocpp-id", "CP-1")) == 0
        t.failed(("ocpp", "10.0.0.1"), ("ocpp-id", "CP-1"))
    assert t.blocked(("ocpp-id", "CP-1")) == 60 and t.blocked(("ocpp", "10.0.0.1")) == 0
    for i in range(27):
        t.failed(("ocpp", "10.0.0.1"), ("ocpp-id", "CP-%d" % (i + 10)))
    assert t.blocked(("ocpp", "10.0.0.1")) == 60 and t.blocked(("api", "10.0.0.1")) == 0
    now[0] = 61.0
    assert t.blocked(("ocpp", "10.0.0.1"), ("ocpp-id", "CP-1")) == 0
