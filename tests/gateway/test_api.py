"""The gateway's HTTP side against its OpenAPI document: every route documented and answering as documented
(with a real ocpp-package station behind it), error bodies that say what is wrong, the API-token rule,
/healthz and /metrics."""
import asyncio
import gc
import json
import os
import re
import signal
import socket
import sys
import urllib.error
import urllib.request

import jsonschema
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from support.gwhttp import TEST_TOKEN, http
from support.stations import Connected, TestStation as _Station, boot, meter

from picocharge.gateway import api, web


class FullStation(_Station):
    """Answers every command the API can send, so each one can be walked with a 200."""

    @on(Action.change_availability)
    def on_change_availability(self, connector_id, type):
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message, **kw):
        return call_result.TriggerMessage(status="Accepted")


async def fetch(port, method, path, body=None, raw=None, headers=None):
    """(status, headers, body bytes) of one request to the gateway (with the test token when no
    headers are given)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Authorization": "Bearer " + TEST_TOKEN} if headers is None else dict(headers)
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method, headers=h)

    def go():
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    return await asyncio.get_running_loop().run_in_executor(None, go)


def json_schema(schema, components):
    """An OpenAPI 3.0 schema as plain JSON Schema: $refs resolved, `nullable` as a null alternative."""
    if isinstance(schema, list):
        return [json_schema(s, components) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        assert name in components, "dangling $ref %s" % schema["$ref"]
        return json_schema(components[name], components)
    out = {k: json_schema(v, components) for k, v in schema.items() if k not in ("nullable", "example")}
    if schema.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def check_answer(doc, op, where, status, headers, body):
    """The status is one the operation documents, with the documented content type and schema."""
    answers = op["responses"]
    assert str(status) in answers, (where, status, body[:300], sorted(answers))
    spec = answers[str(status)]
    if "$ref" in spec:
        spec = doc["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    content = spec.get("content") or {}
    ctype = headers.get("Content-Type", "").split(";")[0]
    if "*/*" in content:
        return body.decode()
    assert ctype in content, (where, status, ctype, sorted(content))
    if ctype != "application/json":
        return body.decode()
    data = json.loads(body)
    schema = json_schema(content[ctype]["schema"], doc["components"]["schemas"])
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as e:
        raise AssertionError("%s %s: answer does not match its schema: %s\n%s" % (where, status, e.message, data))
    return data


async def _station_with_data(gw, sid="CP-1"):
    """A connected FullStation that has booted, charged (one transaction) and sent readings."""
    conn = Connected(gw.port, sid, cls=FullStation)
    cp = await conn.__aenter__()
    await boot(cp)
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
    st = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                             timestamp="2026-01-01T10:00:00Z"))
    await cp.call(call.MeterValues(connector_id=1, transaction_id=st.transaction_id, meter_value=[
        meter("2026-01-01T10:00:10Z", current=15.5, voltage=230.1, power=3566.5, energy=110, temp=24.0, chip=31.5),
        meter("2026-01-01T10:00:20Z", current=15.7, voltage=229.8, power=3607.9, energy=120, temp=24.5)]))
    await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Humidity", data="41.5"))
    return conn, cp


async def test_api__openapi_documents_every_route_and_each_answers_as_documented(gateway):
    gw = await gateway(auth="none")
    s, headers, body = await fetch(gw.port, "GET", "/api/openapi.json")
    assert s == 200 and headers["Content-Type"].startswith("application/json"), (s, headers)
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.0"), doc["openapi"]

    # the document and the server's route table name the same (method, path) pairs
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = set(web.routes())
    assert documented == served, ("undocumented: %s" % sorted(served - documented),
                                  "documented but not served: %s" % sorted(documented - served))
    components = doc["components"]["schemas"]
    # the request examples in the document are valid bodies
    for p, ops in doc["paths"].items():
        for m, op in ops.items():
            for ctype, c in (op.get("requestBody") or {}).get("content", {}).items():
                if "example" in c:
                    jsonschema.validate(c["example"], json_schema(c["schema"], components))

    conn, cp = await _station_with_data(gw)
    try:
        # a diagnostics file CP-1 uploaded (docs/ota.md), which the walk lists and downloads
        s, _h, _b = await fetch(gw.port, "PUT", "/diag/CP-1/CP-1-20260101T100000Z.log", raw=b"a log line\n",
                                headers={"Content-Type": "text/plain"})
        assert s == 201, _b
        s, out = await http(gw, "POST", "/api/stations", {"id": "CP-TS", "thingspeak_channel": 7,
                                                         "thingspeak_key": "WRITEKEY"})
        assert s == 201, out
        # walk every documented operation against the real server (reject, then delete, last:
        # they change CP-1's state, then remove it)
        ops = sorted(((p, m, op) for p, o in doc["paths"].items() for m, op in o.items()),
                     key=lambda x: (x[1] == "delete", x[0].endswith("/reject"), x[0], x[1]))
        seen = {}
        for p, m, op in ops:
            path = p
            for prm in op.get("parameters", []):
                if prm["in"] == "path":
                    path = path.replace("{%s}" % prm["name"], str(prm["example"]))
            assert "{" not in path, (p, "a path parameter without an example")
            body = None
            rb = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if rb is not None:
                body = rb.get("example", {})
            if (m, p) == ("post", "/api/session"):
                body = {"token": TEST_TOKEN}      # the document's example cannot know this gateway's token
            if p in ("/update", "/update.json") and m == "get":
                path += "?api_key=WRITEKEY&field1=21.5&field3=6.25"
            s, headers, raw = await fetch(gw.port, m.upper(), path, body=body)
            where = "%s %s" % (m.upper(), path)
            assert 200 <= s < 300, (where, s, raw[:300])
            seen[(m.upper(), p)] = check_answer(doc, op, where, s, headers, raw)
    finally:
        await conn.__aexit__()

    # what the walk got back is the station's data, not just the right shape
    readings = seen[("GET", "/api/stations/{id}/readings")]
    assert [(r["seq"], r.get("current_a"), r.get("humidity")) for r in readings] == [
        (1, 15.5, None), (2, 15.7, None), (3, None, 41.5)], readings
    tx = seen[("GET", "/api/stations/{id}/transactions")]
    assert [(t["id"], t["id_tag"], t["stop_ts"]) for t in tx] == [(1, "TAG1", None)], tx
    assert seen[("POST", "/api/stations/{id}/get-configuration")] == {"configurationKey": [
        {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"}]}
    assert seen[("POST", "/api/stations/{id}/reject")]["state"] == "rejected"
    assert seen[("DELETE", "/api/stations/{id}")] == {"id": "CP-1", "removed": True, "was_connected": True}
    assert "CP-1" not in gw.stations
    # ingest answers the new reading's seq, as ThingSpeak answers an entry id (3 readings came over OCPP)
    assert [seen[(m, p)] for p in ("/update", "/update.json") for m in ("GET", "POST")] == ["4", "5", "6", "7"]
    assert "fetch(" in seen[("GET", "/static/{file}")] and "<canvas" in seen[("GET", "/station/{id}")]
    assert ("RemoteStartTransaction", "TAG1") in cp.received and ("Reset", "Soft") in cp.received, cp.received


async def test_api__wrong_paths_methods_and_bodies_say_what_is_wrong(gateway):
    gw = await gateway(auth="none")
    await http(gw, "POST", "/api/stations", {"id": "CP-1", "password": "correct-horse-battery-1"})
    cases = [
        ("GET", "/api/nothing", None, 404, {"error": "no such API path: /api/nothing (see /api/openapi.json)"}),
        ("GET", "/api/stations/CP-1/nothing", None, 404,
         {"error": "no such API path: /api/stations/CP-1/nothing (see /api/openapi.json)"}),
        ("POST", "/api/stations/CP-1/fly", b"{}", 404,
         {"error": "no such API path: /api/stations/CP-1/fly (see /api/openapi.json)"}),
        ("GET", "/nothing", None, 404, {"error": "no such page: /nothing (the dashboard is at /, the API under "
                                                 "/api/, described at /api/openapi.json)"}),
        ("GET", "/static/../api.py", None, 404, {"error": "no such file"}),
        ("GET", "/static/nothing.js", None, 404, {"error": "no such file: nothing.js"}),
        ("GET", "/api/stations/CP-9", None, 404, {"error": "unknown station 'CP-9'"}),
        ("POST", "/api/stations/CP-9/reset", b"{}", 404, {"error": "unknown station 'CP-9'"}),
        ("POST", "/api/stations/CP-1/reset", b"{}", 409, {"error": "station CP-1 is not connected"}),
        ("DELETE", "/api/stations", None, 405, {"error": "use GET or POST on /api/stations"}),
        ("GET", "/api/stations/CP-1/remote-start", None, 405,
         {"error": "use POST on /api/stations/CP-1/remote-start"}),
        ("POST", "/api/stations/CP-1/readings", b"{}", 405, {"error": "use GET on /api/stations/CP-1/readings"}),
        ("POST", "/metrics", b"", 405, {"error": "use GET on /metrics"}),
        ("PUT", "/update", b"", 405, {"error": "use GET or POST on /update"}),
        ("POST", "/api/stations", b"{not json", 400,
         {"error": "the body is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                   "(char 1))"}),
        ("POST", "/api/stations", b"[1]", 400, {"error": "the body must be a JSON object"}),
        ("POST", "/api/id-tags", b'{"id_tag": "T\\u0000"}', 400,
         {"error": "id_tag holds a NUL character (U+0000): text may not contain it"}),
        ("POST", "/api/stations/CP-1/remote-start", b'{"id_tag": ["x", {"k\\u0000": 1}]}', 400,
         {"error": "a key of id_tag[1] holds a NUL character (U+0000): text may not contain it"}),
        ("GET", "/update?api_key=K&status=a%00b", None, 400, b"status holds a NUL character (U+0000): text may not "
                                                             b"contain it\n"),
        ("POST", "/api/stations", b'{"id": "bad id!"}', 400,
         {"error": "station id must be 1-48 characters of A-Z a-z 0-9 - _ . starting with a letter or a digit "
                   "(the charge point identity: the last part of the OCPP URL)"}),
        ("POST", "/api/stations", b'{"id": "CP-2", "password": "short"}', 400,
         {"error": "password must be a string of 16..40 printable ASCII characters without spaces (or leave it "
                  "out to generate one)"}),
        ("POST", "/api/stations", b'{"id": "CP-2", "thingspeak_channel": 5}', 400,
         {"error": "give thingspeak_channel and thingspeak_key together"}),
        ("POST", "/api/stations", b'{"id": "CP-1"}', 409, {"error": "station CP-1 is already registered"}),
        ("POST", "/api/id-tags", b'{"id_tag": ""}', 400, {"error": "id_tag must be a string of 1..20 characters"}),
        ("POST", "/api/id-tags", b'{"id_tag": "T", "status": "Maybe"}', 400,
         {"error": "status must be Accepted, Blocked, Expired or Invalid"}),
        ("GET", "/api/stations/CP-1/readings?limit=many", None, 400, {"error": "limit must be an integer"}),
        ("GET", "/api/stations/CP-1/readings?since=yesterday", None, 400,
         {"error": "since 'yesterday' is not ISO 8601 (e.g. 2026-01-31T12:00:00Z)"}),
    ]
    for method, path, raw, status, expected in cases:
        s, headers, body = await fetch(gw.port, method, path, raw=raw)
        got = json.loads(body) if headers.get("Content-Type", "").startswith("application/json") else body
        assert (s, got) == (status, expected), (method, path, s, got)
        if status == 405:
            assert headers["Allow"] == expected["error"][4:].split(" on ")[0].replace(" or ", ", "), headers
    # nothing broke: the same gateway still answers
    s, headers, body = await fetch(gw.port, "GET", "/api/stations")
    assert s == 200 and [st["id"] for st in json.loads(body)] == ["CP-1"], body


async def test_api__token_guards_every_call_with_its_role(gateway):
    token = "s3cret-api-token"
    gw = await gateway(auth="none", api_token=token)
    required = {"error": api.REQUIRED}
    wrong = {"error": api.WRONG}
    # the dashboard page, its OpenAPI document and /healthz carry no secrets and stay open
    for path in ("/", "/api/openapi.json", "/healthz"):
        s, _h, body = await fetch(gw.port, "GET", path, headers={})
        assert s == 200, (path, s, body[:200])
    # every API call and /metrics need a token, also on loopback, reads included
    for path in ("/api/stations", "/api/id-tags", "/metrics"):
        s, h, body = await fetch(gw.port, "GET", path, headers={})
        assert (s, json.loads(body)) == (401, required), (path, s, body[:200])
        assert h["WWW-Authenticate"] == "Bearer", dict(h)
    for headers, status, expected in [
        ({}, 401, required),
        ({"Authorization": "Bearer not-the-token"}, 401, wrong),
        ({"Authorization": "Basic " + token}, 401, required),
        ({"Authorization": "Bearer " + token}, 201, {"id_tag": "TAG1", "status": "Accepted"}),
    ]:
        s, h, body = await fetch(gw.port, "POST", "/api/id-tags", {"id_tag": "TAG1"}, headers=headers)
        assert (s, json.loads(body)) == (status, expected), (headers, s, body)
        if s == 401:
            assert h["WWW-Authenticate"] == "Bearer", dict(h)
    assert gw.id_tags == {"TAG1": "Accepted"}, gw.id_tags
    s, _h, body = await fetch(gw.port, "POST", "/api/stations", {"id": "CP-1"}, headers={})
    assert s == 401 and "CP-1" not in gw.stations, body
    # tokens from the token file, each with its role
    read, _ = gw.tokens.create("read", "grafana")
    operate, _ = gw.tokens.create("operate", "night shift")
    for tok, method, path, body, status in [
        (read, "GET", "/api/id-tags", None, 200),
        (read, "GET", "/metrics", None, 200),
        (read, "POST", "/api/id-tags", {"id_tag": "T2"}, 403),
        (operate, "POST", "/api/id-tags", {"id_tag": "T2"}, 201),
        (operate, "POST", "/api/stations", {"id": "CP-2"}, 403),
    ]:
        s, _h, out = await fetch(gw.port, method, path, body, headers={"Authorization": "Bearer " + tok})
        assert s == status, (method, path, s, out)
    s, _h, out = await fetch(gw.port, "POST", "/api/stations", {"id": "CP-2"}, headers={"Authorization": "Bearer " + read})
    assert json.loads(out) == {"error": "this token's role is read; POST /api/stations needs admin"}, out
    # a revoked token is refused at once (the file is read again when it changes)
    rid = [r["id"] for r in gw.tokens.rows() if r["name"] == "night shift"][0]
    assert gw.tokens.revoke(rid)
    s, _h, out = await fetch(gw.port, "GET", "/api/id-tags", headers={"Authorization": "Bearer " + operate})
    assert (s, json.loads(out)) == (401, wrong), out
    # --api-auth none: open (demos and benchmarks)
    gw2 = await gateway(auth="none", db=gw.settings.db + "-2", api_auth="none")
    s, _h, body = await fetch(gw2.port, "POST", "/api/id-tags", {"id_tag": "TAG2"}, headers={})
    assert s == 201, body


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _metrics(text):
    """{'name{labels}': value} of an exposition, after checking every sample has its HELP and TYPE."""
    helped, typed, samples = set(), set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("gauge", "counter"), line
            typed.add(name)
        else:
            m = re.fullmatch(r'([a-z_]+)(\{[a-z_]+="[^"]*"\})? (-?[0-9.]+)', line)
            assert m, "not a Prometheus sample line: %r" % line
            assert m.group(1) in helped and m.group(1) in typed, "no HELP/TYPE for %s" % m.group(1)
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


async def test_api__healthz_and_metrics_report_stations_messages_outbox_and_upload_errors(gateway):
    dead = "http://127.0.0.1:%d" % _free_port()     # ThingSpeak down: readings wait in the outbox
    gw = await gateway(auth="none", thingspeak_url=dead, thingspeak_interval=0.05)
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-1", "thingspeak_channel": 3,
                                                     "thingspeak_key": "KEY3"})
    assert s == 201, out
    conn, cp = await _station_with_data(gw)      # 5 frames, 3 readings
    try:
        s, out = await http(gw, "GET", "/healthz")
        assert (s, {k: out[k] for k in ("status", "stations_connected", "stations_known")}) == \
            (200, {"status": "ok", "stations_connected": 1, "stations_known": 1}), out
        for _ in range(200):
            s, text = await http(gw, "GET", "/metrics")
            m = _metrics(text)
            if m['picocharge_uplink_errors_total{uplink="thingspeak"}'] >= 1:
                break
            await asyncio.sleep(0.05)
        expected = {
            "picocharge_stations_connected": 1, "picocharge_stations_known": 1,
            "picocharge_ocpp_messages_total": 5, "picocharge_readings_stored_total": 3,
            "picocharge_ocpp_refused_total": 0,
            'picocharge_ingest_total{path="http"}': 0, 'picocharge_ingest_total{path="mqtt"}': 0,
            'picocharge_outbox_depth{uplink="thingspeak"}': 3,
            'picocharge_uplink_delivered_total{uplink="thingspeak"}': 0,
        }
        assert {k: m.get(k) for k in expected} == expected, text
        assert m['picocharge_uplink_errors_total{uplink="thingspeak"}'] >= 1, text
        assert m["picocharge_messages_per_second"] > 0 and m["picocharge_db_commits_total"] > 0, text
        # the collector's passes and CPU, by generation (the bench's gc% column): a full pass
        # in this process (the gateway runs in it) is counted with its time
        full = 'picocharge_gc_collections_total{generation="2"}'
        full_s = 'picocharge_gc_cpu_seconds_total{generation="2"}'
        assert all('picocharge_gc_cpu_seconds_total{generation="%d"}' % g in m for g in (0, 1, 2)), text
        gc.collect()
        s, text = await http(gw, "GET", "/metrics")
        m2 = _metrics(text)
        assert m2[full] >= m[full] + 1 and m2[full_s] > m[full_s], (m, m2)
        s, out = await http(gw, "GET", "/healthz")     # ThingSpeak never answered: disconnected, and why
        assert out["uplinks"] == {"thingspeak": "disconnected"}, out
        assert list(out["thingspeak_failing"]) == ["CP-1"], out
        assert "cannot reach %s" % dead in out["thingspeak_failing"]["CP-1"] and "KEY3" not in str(out), out
    finally:
        await conn.__aexit__()
    for _ in range(200):
        s, out = await http(gw, "GET", "/healthz")
        if out["stations_connected"] == 0:
            break
        await asyncio.sleep(0.05)
    assert out["stations_connected"] == 0, out


async def test_api__the_gateway_command_serves_with_its_token_and_stops_on_sigterm(tmp_path):
    env = dict(os.environ, PICOCHARGE_GATEWAY_API_TOKEN="env-token-1")
    with open(tmp_path / "gateway.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "picocharge.cli", "gateway", "--port", "0", "--auth", "none",
            "--db", str(tmp_path / "gw.db"), "--thingspeak-url", "", stdout=asyncio.subprocess.PIPE,
            stderr=log, env=env)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            m = re.fullmatch(rb"gateway listening on http://127\.0\.0\.1:(\d+)\n", line)
            assert m, (line, (tmp_path / "gateway.log").read_text())
            port = int(m.group(1))
            s, _h, body = await fetch(port, "GET", "/healthz")
            assert (s, json.loads(body)) == (200, {"status": "ok", "stations_connected": 0, "stations_known": 0,
                                                   "uplinks": {}}), body
            s, _h, body = await fetch(port, "POST", "/api/id-tags", {"id_tag": "TAG1"})
            assert s == 401, body
            s, _h, body = await fetch(port, "POST", "/api/id-tags", {"id_tag": "TAG1"},
                                      headers={"Authorization": "Bearer env-token-1"})
            assert s == 201, body
            proc.send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(proc.stdout.read(), 60)
            assert (await proc.wait(), rest) == (0, b"gateway stopped\n"), rest
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert b"env-token-1" not in (tmp_path / "gateway.log").read_bytes()
    # a certificate that is not there stops the start, naming it
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "picocharge.cli", "gateway", "--port", "0", "--db", str(tmp_path / "gw.db"),
        "--tls-cert", str(tmp_path / "nope.pem"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, err.decode()) == (1, "Error: TLS certificate not found: %s\n" % (tmp_path / "nope.pem")), err
