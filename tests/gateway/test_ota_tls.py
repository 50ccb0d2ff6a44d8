"""Releases and diagnostics over TLS (docs/ota.md): a station connected over wss:// is sent https://
locations, and a station of OCPP security profile 3 fetches and uploads with its client certificate
alone (no password), checked as on /ocpp/<id>: the certificate's CN is the station."""
import asyncio
import ssl

from support import tls_certs
from support.cli import run_cli
from support.otaboard import OtaBoard, basic, make_bundle, tar_of


def _ctx(certs, cert=None):
    ctx = ssl.create_default_context(cafile=str(certs.ca_pem))
    if cert:
        ctx.load_cert_chain(*(str(p) for p in cert))
    return ctx


def _raw(port, ctx, method, path, headers=b"", body=b""):
    """(status, body) of one https request (the gateway's station side, outside any client library)."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
                method.encode(), path.encode(), headers, len(body), body))
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
    head, _, data = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), data


async def test_ota_tls__profile3_station_updates_and_uploads_with_its_certificate(gateway, tmp_path):
    certs = tls_certs.make(tmp_path / "pki")
    station = tls_certs.client(certs, "CP-C")
    other = tls_certs.client(certs, "CP-D")
    gw = await gateway(auth="password", tls_cert=str(certs.cert), tls_key=str(certs.key),
                       client_ca=str(certs.ca_pem))
    await gw.register("CP-C", "password-of-cp-c-xx")
    await gw.register("CP-D", "password-of-cp-d-xx")
    bundle = make_bundle(tmp_path / "b", "0.2.0")
    s, out = await asyncio.to_thread(_raw, gw.port, _ctx(certs), "POST", "/api/releases",
                                     b"Authorization: Bearer %s\r\nContent-Type: application/x-tar\r\n"
                                     % gw.settings.api_token.encode(), tar_of(bundle))
    assert s == 201, out
    # the station side, by hand: the certificate is the credential
    s, body = await asyncio.to_thread(_raw, gw.port, _ctx(certs, station), "GET", "/fw/0.2.0/app.py")
    assert (s, body) == (200, (bundle / "app.py").read_bytes()), (s, body)
    s, body = await asyncio.to_thread(_raw, gw.port, _ctx(certs), "GET", "/fw/0.2.0/app.py")
    assert s == 401, body
    s, body = await asyncio.to_thread(_raw, gw.port, _ctx(certs, other), "PUT", "/diag/CP-C/x.log", b"", b"x\n")
    assert s == 403 and b"these are station CP-D's credentials" in body, body
    s, body = await asyncio.to_thread(_raw, gw.port, _ctx(certs), "GET", "/fw/0.2.0/app.py",
                                      b"Authorization: %s\r\n" % basic("CP-C", "password-of-cp-c-xx").encode())
    assert s == 200, body       # profile 2 (Basic over https) as well

    board = await OtaBoard(gw.port, "CP-C", None, ssl=_ctx(certs, station)).start()
    try:
        assert gw.station_view("CP-C")["security_profile"] == 3
        got = await asyncio.to_thread(_raw, gw.port, _ctx(certs), "POST", "/api/stations/CP-C/update",
                                      b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                                      % gw.settings.api_token.encode(), b'{"version": "0.2.0"}')
        assert got[0] == 200 and b'"location":"https://127.0.0.1:%d/fw/0.2.0/manifest.json"' % gw.port in got[1], got

        async def until(pred):
            while not pred():
                await asyncio.sleep(0.05)
        await asyncio.wait_for(until(lambda: gw.stations["CP-C"]["firmware"] == "0.2.0" and
                                     gw.ota_last.get(("CP-C", "firmware"), ("",))[0] == "Installed"), 30)
        got = await asyncio.to_thread(_raw, gw.port, _ctx(certs), "POST", "/api/stations/CP-C/diagnostics",
                                      b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                                      % gw.settings.api_token.encode(), b"{}")
        assert got[0] == 200 and b'"location":"https://127.0.0.1:%d/diag/CP-C/"' % gw.port in got[1], got
        await asyncio.wait_for(until(lambda: gw.ota_last.get(("CP-C", "diagnostics"), ("",))[0] == "Uploaded"), 30)
        assert board.statuses[-2:] == [("diagnostics", "Uploading"), ("diagnostics", "Uploaded")], board.statuses
    finally:
        await board.stop()


async def test_ota_tls__a_revoked_certificate_fetches_nothing(gateway, tmp_path):
    # the CA and its revocation list made by `picocharge gateway ca` (openssl), as an operator does
    ca_dir, out = tmp_path / "ca", tmp_path / "st"
    assert run_cli("gateway", "ca", "init", "--dir", str(ca_dir)).returncode == 0
    assert run_cli("gateway", "ca", "issue", "CP-R", "--dir", str(ca_dir), "--out", str(out)).returncode == 0
    certs = tls_certs.make(tmp_path / "pki")
    gw = await gateway(auth="password", tls_cert=str(certs.cert), tls_key=str(certs.key),
                       client_ca=str(ca_dir / "ca.crt"), client_crl=str(ca_dir / "ca.crl"))
    await gw.register("CP-R", "password-of-cp-r-xx")
    bundle = make_bundle(tmp_path / "b", "0.2.0")
    s, out_ = await asyncio.to_thread(_raw, gw.port, _ctx(certs), "POST", "/api/releases",
                                      b"Authorization: Bearer %s\r\nContent-Type: application/x-tar\r\n"
                                      % gw.settings.api_token.encode(), tar_of(bundle))
    assert s == 201, out_
    stolen = (out / "CP-R.crt", out / "CP-R.key")
    s, body = await asyncio.to_thread(_raw, gw.port, _ctx(certs, stolen), "GET", "/fw/0.2.0/main.py")
    assert (s, body) == (200, (bundle / "main.py").read_bytes()), (s, body)
    r = await asyncio.to_thread(run_cli, "gateway", "ca", "revoke", "CP-R", "--dir", str(ca_dir), "--cert",
                                str(stolen[0]))
    assert r.returncode == 0, r.stderr
    for _ in range(50):         # the gateway looks at the list again at most once a second
        s, body = await asyncio.to_thread(_raw, gw.port, _ctx(certs, stolen), "GET", "/fw/0.2.0/main.py")
        if s != 200:
            break
        await asyncio.sleep(0.2)
    assert s == 401 and b"station credentials required" in body, (s, body)
