"""OCPP security profile 3: stations authenticate with a TLS client certificate from the
operator's CA (--client-ca), its CN the station id; made with `picocharge gateway ca` (the
real openssl command, once per test session) and checked by charge points built on the
`ocpp` package over real TLS sockets."""
import asyncio
import json
import os
import re
import signal
import ssl
import stat
import subprocess
import sys

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from support import tls_certs
from support.gwhttp import TEST_TOKEN, basic
from picocharge.gateway.app import STATION_401
from picocharge.gateway.auth import CERT_REQUIRED_401
from support.stations import TestStation as Station, boot

PW = "cert-station-pw-1"


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway"] + list(args), capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The operator CA and station certificates made with `picocharge gateway ca` (openssl), the
    gateway's server certificate, and certificates from another CA (tests/support/tls_certs.py)."""
    d = tmp_path_factory.mktemp("pki")
    ca_dir, out = d / "ca", d / "stations"
    r = _cli("ca", "init", "--dir", str(ca_dir))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("CA certificate: %s/ca.crt (the gateway's --client-ca)\nCA key:         %s/ca.key (secret: "
                        "it issues station certificates)\nrevocation list: %s/ca.crl (the gateway's --client-crl; "
                        "`ca revoke` adds to it)\n" % (ca_dir, ca_dir, ca_dir)), r.stdout
    for sid in ("CP-C", "CP-OTHER"):
        r = _cli("ca", "issue", sid, "--dir", str(ca_dir), "--out", str(out))
        assert r.returncode == 0, r.stderr
        assert r.stdout == "station %s: certificate %s/%s.crt, key %s/%s.key\n" % (sid, out, sid, out, sid), r.stdout
    certs = tls_certs.make(d / "server")
    certs.client_ca = ca_dir / "ca.crt"
    certs.station = {sid: (out / (sid + ".crt"), out / (sid + ".key")) for sid in ("CP-C", "CP-OTHER")}
    # the right CN, from somebody else's CA
    certs.foreign = tls_certs.client(certs, "CP-C", wrong_ca=True, name="foreign-CP-C")
    return certs


@pytest.mark.parametrize("n", [0x0D6FE6B5C657469C6EB97ECA57860F94, 0xD6FE6B5C657469C6EB97ECA57860F94A, 0x1, 0xABC])
def test_ca__serials_are_shown_as_openssl_shows_them(n, tmp_path):
    """Whole bytes, a leading zero nibble kept: the revoke command printed D6FE... for a serial
    openssl shows as 0D6FE... (1 run in 16 of the revoke test)."""
    from picocharge.gateway.ca import serial_hex

    key = tmp_path / "k.pem"
    crt = tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-subj", "/CN=x", "-days", "1",
                    "-set_serial", str(n)], check=True, capture_output=True)
    shown = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-serial"], capture_output=True,
                           text=True, check=True).stdout.strip().split("=")[1]
    assert serial_hex(n) == shown, (hex(n), shown)


def test_ca__cli_makes_0600_files_and_refuses_to_overwrite(pki, tmp_path):
    for p in [pki.client_ca, pki.client_ca.with_name("ca.key")] + list(pki.station["CP-C"]):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, (p, oct(os.stat(p).st_mode))
    r = _cli("ca", "init", "--dir", str(pki.client_ca.parent))
    assert r.returncode == 1, r
    assert "ca.crt and %s already exist: keep them, or give --force" % pki.client_ca.with_name("ca.key") in r.stderr, \
        r.stderr
    r = _cli("ca", "issue", "CP-X", "--dir", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "no CA in %s (ca.crt is missing): make one with `picocharge gateway ca init" % (
        tmp_path / "nothing") in r.stderr, r.stderr
    r = _cli("ca", "issue", "CP/1", "--dir", str(pki.client_ca.parent))
    assert r.returncode == 1 and "station id 'CP/1': station id must be 1-48 characters" in r.stderr, r.stderr
    # what was issued is what the gateway expects: a client certificate with CN = the station id
    text = subprocess.run(["openssl", "x509", "-in", str(pki.station["CP-C"][0]), "-noout", "-subject", "-issuer",
                           "-ext", "extendedKeyUsage,basicConstraints"], capture_output=True, text=True).stdout
    assert "subject=CN = CP-C" in text and "issuer=CN = PicoCharge operator CA" in text, text
    assert "TLS Web Client Authentication" in text and "CA:FALSE" in text, text


def _ctx(pki, cert=None):
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))    # the server's certificate: 127.0.0.1
    if cert:
        ctx.load_cert_chain(*(str(p) for p in cert))
    return ctx


async def _gateway(gateway, pki, **kw):
    kw.setdefault("auth", "password")
    gw = await gateway(tls_cert=str(pki.cert), tls_key=str(pki.key), client_ca=str(pki.client_ca),
                       **kw)
    await gw.register("CP-C", PW)
    return gw


async def _boot(gw, sid, ctx, headers=None):
    """BootNotification's status over wss:// as `sid`, presenting what `ctx` holds."""
    async with websockets.connect("wss://127.0.0.1:%d/ocpp/%s" % (gw.port, sid), subprotocols=["ocpp1.6"], ssl=ctx,
                                  additional_headers=headers, open_timeout=10) as ws:
        cp = Station(sid, ws)
        task = asyncio.create_task(cp.start())
        try:
            return (await boot(cp)).status
        finally:
            task.cancel()


async def _refused(gw, sid, ctx, headers=None):
    """(status, body) of a refused handshake."""
    with pytest.raises(InvalidStatus) as e:
        await _boot(gw, sid, ctx, headers)
    r = e.value.response
    return r.status_code, r.body.decode(), r.headers.get("WWW-Authenticate")


def _raw_get(port, ctx, path="/healthz", token=None):
    """A blocking TLS request: the answer, or the ssl.SSLError the gateway's alert becomes."""
    import socket
    auth = b"Authorization: Bearer %s\r\n" % token.encode() if token else b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n" % (path.encode(), auth))
            out = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        return out
                    out += chunk
            except ssl.SSLError as e:
                return out or e


async def _api(gw, pki, path):
    """The body of an https:// API GET (no client certificate: tokens are the API's credential)."""
    got = await asyncio.to_thread(_raw_get, gw.port, _ctx(pki), path, TEST_TOKEN)
    assert got.startswith(b"HTTP/1.1 200"), got[:300]
    return got.split(b"\r\n\r\n", 1)[1].decode()


async def test_profile3__a_station_certificate_with_its_id_as_cn_boots_without_a_password(gateway, pki, caplog):
    gw = await _gateway(gateway, pki)
    caplog.set_level("INFO", logger="picocharge.gateway.app")
    assert await _boot(gw, "CP-C", _ctx(pki, pki.station["CP-C"])) == "Accepted"
    assert (gw.station_profile, gw.metrics.profiles) == ({"CP-C": 3}, {3: 1}), (gw.station_profile, gw.metrics.profiles)
    assert re.search(r"station=CP-C connected from 127\.0\.0\.1:\d+ \(OCPP security profile 3: client certificate "
                     r"over wss://\)", caplog.text), caplog.text
    # optional (the default): a station without a certificate still comes in with its password, profile 2
    assert await _boot(gw, "CP-C", _ctx(pki), basic("CP-C", PW)) == "Accepted"
    assert gw.station_profile == {"CP-C": 2} and gw.metrics.profiles == {3: 1, 2: 1}, gw.metrics.profiles
    assert re.search(r"station=CP-C connected from \S+ \(OCPP security profile 2: HTTP Basic over wss://\)",
                     caplog.text), caplog.text
    status, body, _ = await _refused(gw, "CP-C", _ctx(pki), basic("CP-C", "wrong-password"))
    assert (status, body) == (401, STATION_401 + "\n"), (status, body)
    # the API record says how the station last signed in; /metrics counts sign-ins by profile
    assert json.loads(await _api(gw, pki, "/api/stations/CP-C"))["security_profile"] == 2
    metrics = await _api(gw, pki, "/metrics")
    for line in ('picocharge_ocpp_authenticated_total{profile="2"} 1.0',
                 'picocharge_ocpp_authenticated_total{profile="3"} 1.0'):
        assert line in metrics.splitlines(), metrics


async def test_profile3__a_cn_that_is_not_the_url_id_is_refused_like_a_wrong_password(gateway, pki, caplog):
    gw = await _gateway(gateway, pki, auth_fail_limit=2)
    await gw.register("CP-OTHER", "other-station-pw")
    other = _ctx(pki, pki.station["CP-OTHER"])
    caplog.set_level("WARNING", logger="picocharge.gateway.ocpp_ws")
    for _ in range(2):      # CP-OTHER's certificate for CP-C's id, even with CP-C's right password
        got = await _refused(gw, "CP-C", other, basic("CP-C", PW))
        assert got == (401, STATION_401 + "\n", 'Basic realm="PicoCharge OCPP", charset="UTF-8"'), got
    assert "station=CP-C refused (127.0.0.1): client certificate CN 'CP-OTHER' is not the station id in the URL" \
        in caplog.text, caplog.text
    # counted in the failed-auth slow-down: the third try is not even looked at
    status, body, _ = await _refused(gw, "CP-C", _ctx(pki, pki.station["CP-C"]))
    assert status == 429, (status, body)
    assert "CP-C" not in gw.sessions and gw.station_profile == {}, gw.station_profile


async def test_profile3__a_certificate_from_another_ca_fails_the_tls_handshake(gateway, pki):
    gw = await _gateway(gateway, pki)
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError, websockets.exceptions.InvalidMessage)):
        await _boot(gw, "CP-C", _ctx(pki, pki.foreign), basic("CP-C", PW))
    # the gateway's TLS ends the connection in the handshake, before any HTTP: under TLS 1.3 the
    # client has sent its request when it learns (no answer ever comes), under TLS 1.2 its
    # handshake fails (asyncio's TLS closes without sending an alert)
    got = await asyncio.to_thread(_raw_get, gw.port, _ctx(pki, pki.foreign))
    assert got == b"", got
    tls12 = _ctx(pki, pki.foreign)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLEOFError):
        await asyncio.to_thread(_raw_get, gw.port, tls12)
    assert gw.station_profile == {} and "CP-C" not in gw.sessions
    assert gw.metrics.refused == 0, "no HTTP request reached the OCPP endpoint"
    # the same clients with the operator's certificate, or none (optional), are served: it was the CA
    for cert in (pki.station["CP-C"], None):
        for top in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = _ctx(pki, cert)
            ctx.maximum_version = top
            got = await asyncio.to_thread(_raw_get, gw.port, ctx)
            assert got.startswith(b"HTTP/1.1 200"), (cert, top, got)


async def test_profile3__required_refuses_stations_without_a_certificate_but_not_the_dashboard(gateway, pki):
    gw = await _gateway(gateway, pki, client_cert="required")
    got = await _refused(gw, "CP-C", _ctx(pki), basic("CP-C", PW))
    assert got == (401, CERT_REQUIRED_401 + "\n", None), got
    assert await _boot(gw, "CP-C", _ctx(pki, pki.station["CP-C"])) == "Accepted"
    assert gw.station_profile == {"CP-C": 3}
    # https:// without a client certificate: the dashboard and the API are reached with tokens
    r, w = await asyncio.open_connection("127.0.0.1", gw.port, ssl=_ctx(pki))
    w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    head = await r.read()
    w.close()
    assert head.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in head, head[:200]


async def test_profile3__unknown_station_with_a_good_certificate_needs_registering(gateway, pki):
    gw = await _gateway(gateway, pki)
    got = await _refused(gw, "CP-OTHER", _ctx(pki, pki.station["CP-OTHER"]))
    assert got[:2] == (401, STATION_401 + "\n"), got      # the same answer as an unknown id with a password
    await gw.set_state("CP-C", "rejected")
    got = await _refused(gw, "CP-C", _ctx(pki, pki.station["CP-C"]))
    assert got[:2] == (403, "station is rejected by the operator\n"), got


async def test_profile3__auth_pending_admits_an_unknown_station_with_a_good_certificate_as_pending(gateway, pki):
    gw = await _gateway(gateway, pki, auth="pending")
    assert await _boot(gw, "CP-OTHER", _ctx(pki, pki.station["CP-OTHER"])) == "Pending"
    st = json.loads(await _api(gw, pki, "/api/stations/CP-OTHER"))
    assert (st["state"], st["security_profile"]) == ("pending", 3), st
    assert not gw.stations["CP-OTHER"]["pw_hash"], "admitted by its certificate: no password was taken"
    # a certificate from another CA is not admitted, whatever its CN
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError, websockets.exceptions.InvalidMessage)):
        await _boot(gw, "CP-C", _ctx(pki, pki.foreign))


async def test_profile3__bad_client_ca_settings_stop_the_start_with_the_reason(gateway, pki, tmp_path):
    from picocharge.gateway.app import Gateway, Settings
    cases = [
        (dict(client_ca=str(pki.client_ca)), "a client CA \\(--client-ca\\) needs TLS: give the server's --tls-cert"),
        (dict(tls_cert=str(pki.cert), tls_key=str(pki.key), client_ca=str(tmp_path / "none.crt")),
         "TLS client CA not found: .*none.crt"),
        # a station's certificate is no CA
        (dict(tls_cert=str(pki.cert), tls_key=str(pki.key), client_ca=str(pki.station["CP-C"][0])),
         "client CA .*CP-C.crt holds no CA certificate"),
        (dict(tls_cert=str(pki.cert), tls_key=str(pki.key), client_ca=str(pki.station["CP-C"][1])),
         "client CA .*CP-C.key does not load"),
    ]
    for i, (kw, match) in enumerate(cases):
        with pytest.raises(ValueError, match=match):
            await Gateway(Settings(db=str(tmp_path / ("%d.db" % i)), port=0, **kw)).start()


def test_profile3__the_gateway_command_on_uvloop_takes_client_ca_from_its_environment(pki, tmp_path):
    # the command runs on uvloop (server.py): its TLS transport hands the client certificate on too
    env = dict(os.environ, PICOCHARGE_GATEWAY_CLIENT_CA=str(pki.client_ca), PICOCHARGE_GATEWAY_CLIENT_CERT="required")
    db = str(tmp_path / "gw.db")
    r = _cli("add-station", "CP-C", "--db", db, "--password", PW)
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen([sys.executable, "-m", "picocharge.cli", "gateway", "--port", "0", "--db", db,
                          "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        m = re.match(r"gateway listening on https://127\.0\.0\.1:(\d+)$", line.strip())
        assert m, (line, p.stderr.read() if p.poll() is not None else "")

        class Gw:
            port = int(m.group(1))

        async def go():
            refused = await _refused(Gw, "CP-C", _ctx(pki), basic("CP-C", PW))
            return refused, await _boot(Gw, "CP-C", _ctx(pki, pki.station["CP-C"]))

        refused, status = asyncio.run(go())
        assert refused == (401, CERT_REQUIRED_401 + "\n", None) and status == "Accepted", (refused, status)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    assert "uvloop is not installed" not in err, err
    assert re.search(r"station=CP-C connected from \S+ \(OCPP security profile 3: client certificate", err), err


async def test_profile3__a_revoked_certificate_is_refused_from_the_next_connection(gateway, pki, tmp_path, caplog):
    # a stolen or retired board: its certificate is revoked with `ca revoke`, the running gateway
    # reads the CA's new list (--client-crl) and refuses it; the other stations go on
    ca_dir, out = tmp_path / "ca", tmp_path / "st"
    assert _cli("ca", "init", "--dir", str(ca_dir)).returncode == 0
    for sid in ("CP-R", "CP-KEEP"):
        assert _cli("ca", "issue", sid, "--dir", str(ca_dir), "--out", str(out)).returncode == 0
    crl = ca_dir / "ca.crl"
    assert os.stat(crl).st_mode & 0o777 == 0o600
    gw = await gateway(tls_cert=str(pki.cert), tls_key=str(pki.key), client_ca=str(ca_dir / "ca.crt"),
                       client_crl=str(crl), auth="password")
    await gw.register("CP-R", PW)
    await gw.register("CP-KEEP", PW)
    stolen, keep = (out / "CP-R.crt", out / "CP-R.key"), (out / "CP-KEEP.crt", out / "CP-KEEP.key")
    assert await _boot(gw, "CP-R", _ctx(pki, stolen)) == "Accepted"
    r = _cli("ca", "revoke", "CP-R", "--dir", str(ca_dir), "--cert", str(stolen[0]))
    assert r.returncode == 0, r.stderr
    serial = subprocess.run(["openssl", "x509", "-in", str(stolen[0]), "-noout", "-serial"], capture_output=True,
                            text=True).stdout.strip().split("=")[1]
    assert r.stdout == "revoked certificate serial %s; revocation list: %s (the gateway's --client-crl)\n" % (
        serial, crl), r.stdout
    caplog.set_level("WARNING", logger="picocharge.gateway.ocpp_ws")
    for _ in range(50):         # the gateway looks at the file at most once a second
        try:
            await _boot(gw, "CP-R", _ctx(pki, stolen))
        except InvalidStatus as e:
            assert (e.response.status_code, e.response.body.decode()) == (401, STATION_401 + "\n")
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the revoked certificate is still accepted")
    assert "station=CP-R refused (127.0.0.1): client certificate CP-R (serial %s) is revoked" % serial in caplog.text
    assert await _boot(gw, "CP-KEEP", _ctx(pki, keep)) == "Accepted"
    # revoking it again changes nothing; a certificate of another CA is not this CA's to revoke
    assert _cli("ca", "revoke", "--dir", str(ca_dir), "--cert", str(stolen[0])).returncode == 0
    r = _cli("ca", "revoke", "--dir", str(ca_dir), "--cert", str(pki.station["CP-C"][0]))
    assert r.returncode == 1 and "was not issued by the CA in %s" % ca_dir in r.stderr, r.stderr
    r = _cli("ca", "revoke", "--dir", str(ca_dir))
    assert r.returncode == 2 and "give the STATION_ID whose certificate to revoke, or --cert FILE" in r.stderr
    # a broken list never undoes a revocation: the last good one stays in force
    caplog.set_level("ERROR", logger="picocharge.gateway.ca")
    crl.write_text("not a CRL")
    await asyncio.sleep(1.1)
    with pytest.raises(InvalidStatus):
        await _boot(gw, "CP-R", _ctx(pki, stolen))
    assert "the last good list (1 revoked) stays in force" in caplog.text, caplog.text
    assert await _boot(gw, "CP-KEEP", _ctx(pki, keep)) == "Accepted"


async def test_profile3__a_crl_of_another_ca_or_without_a_client_ca_stops_the_start(pki, tmp_path):
    from picocharge.gateway.app import Gateway, Settings
    other = tmp_path / "other"
    assert _cli("ca", "init", "--dir", str(other)).returncode == 0
    tls = dict(tls_cert=str(pki.cert), tls_key=str(pki.key))
    cases = [
        (dict(tls, client_ca=str(pki.client_ca), client_crl=str(other / "ca.crl")),
         "the CRL .*other/ca.crl is not one signed by the client CA"),
        (dict(tls, client_crl=str(other / "ca.crl")), "a client CRL \\(--client-crl\\) needs the CA that signed it"),
        (dict(tls, client_ca=str(pki.client_ca), client_crl=str(tmp_path / "none.crl")), "client CRL not found"),
    ]
    for i, (kw, match) in enumerate(cases):
        with pytest.raises(ValueError, match=match):
            await Gateway(Settings(db=str(tmp_path / ("%d.db" % i)), port=0, **kw)).start()
