"""OCPP security profile 2: the gateway with a certificate serves wss:// and https:// on its one
port, still with HTTP Basic passwords; plain ws:// is refused; a bad certificate stops the start."""
import asyncio
import ssl

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from support.firmware import TLS   # self-signed, CN=127.0.0.1
from support.gwhttp import basic
from support.stations import TestStation as Station, boot


def _client_ctx():
    ctx = ssl.create_default_context(cafile=str(TLS / "cert.pem"))
    ctx.check_hostname = False      # the test certificate names 127.0.0.1 in its CN only, not in a SAN
    return ctx


async def _https(port, path):
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=_client_ctx())
    w.write(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path.encode())
    data = await r.read()
    w.close()
    return data


async def test_tls__wss_with_password_boots_and_plain_ws_is_refused(gateway):
    gw = await gateway(auth="password", tls_cert=str(TLS / "cert.pem"), tls_key=str(TLS / "key.pem"))
    await gw.register("CP-T", "tls-password-1")
    url = "wss://127.0.0.1:%d/ocpp/CP-T" % gw.port
    async with websockets.connect(url, subprotocols=["ocpp1.6"], ssl=_client_ctx(),
                                  additional_headers=basic("CP-T", "tls-password-1")) as ws:
        cp = Station("CP-T", ws)
        task = asyncio.create_task(cp.start())
        try:
            r = await boot(cp)
            assert r.status == "Accepted", r
        finally:
            task.cancel()
    with pytest.raises(InvalidStatus) as e:
        async with websockets.connect(url, subprotocols=["ocpp1.6"], ssl=_client_ctx(),
                                      additional_headers=basic("CP-T", "wrong-password")):
            pass
    assert e.value.response.status_code == 401
    # a station that speaks plain ws:// to the TLS port gets no OCPP session
    with pytest.raises((OSError, websockets.exceptions.InvalidMessage, asyncio.TimeoutError, EOFError)):
        async with websockets.connect(url.replace("wss://", "ws://"), subprotocols=["ocpp1.6"], open_timeout=5,
                                      additional_headers=basic("CP-T", "tls-password-1")):
            pass
    head = await _https(gw.port, "/healthz")
    assert head.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in head, head[:200]
    assert "CP-T" not in gw.sessions


async def test_tls__bad_certificate_or_key_is_refused_at_start_with_the_reason(gateway, tmp_path):
    from picocharge.gateway.app import Gateway, Settings
    with pytest.raises(ValueError, match="not found: .*missing.pem"):
        await Gateway(Settings(db=str(tmp_path / "a.db"), port=0, tls_cert=str(tmp_path / "missing.pem"))).start()
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="do not load .*PEM certificate and its private key"):
        await Gateway(Settings(db=str(tmp_path / "b.db"), port=0, tls_cert=str(junk))).start()
    with pytest.raises(ValueError, match="key without a certificate"):
        await Gateway(Settings(db=str(tmp_path / "c.db"), port=0, tls_key=str(TLS / "key.pem"))).start()
