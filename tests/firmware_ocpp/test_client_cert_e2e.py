"""OCPP security profile 3 end to end: the real firmware on the unix board presents its client
certificate (ocpp.client_cert, ocpp.client_key on its flash) over wss:// to the real gateway
run with --client-ca, and boots without a password. The CA and the station certificates are
made with `picocharge gateway ca` (openssl); the gateway's own certificate and a foreign CA
come from tests/support/tls_certs.py."""
import subprocess
import sys
from pathlib import Path

import pytest

from support import tls_certs
from support.central import station_config
from picocharge.gateway import ca as gwca
from picocharge.gateway.app import Gateway, Settings


def _cli(*args):
    r = subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway"] + list(args), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
async def gateway_p3(tmp_path):
    """The gateway over wss:// with the operator CA as --client-ca; CP-1 registered (a password
    it never uses), certificates in a namespace."""
    certs = tls_certs.make(tmp_path / "pki")
    _cli("ca", "init", "--dir", str(tmp_path / "ca"))
    for sid in ("CP-1", "CP-OTHER"):
        _cli("ca", "issue", sid, "--dir", str(tmp_path / "ca"), "--out", str(tmp_path / "stations"))
    certs.station = {sid: (tmp_path / "stations" / (sid + ".crt"), tmp_path / "stations" / (sid + ".key"))
                     for sid in ("CP-1", "CP-OTHER")}
    certs.foreign = tls_certs.client(certs, "CP-1", wrong_ca=True, name="foreign")
    gw = Gateway(Settings(db=str(tmp_path / "gw.db"), port=0, auth="password", thingspeak_url=None,
                          gc_freeze=False, api_token="t0-admin-token", tls_cert=str(certs.cert),
                          tls_key=str(certs.key), client_ca=str(tmp_path / "ca" / "ca.crt")))
    await gw.start()
    await gw.register("CP-1", "never-sent-pw-1")
    try:
        yield gw, certs
    finally:
        await gw.stop()


def _with_cert(station, gw, certs, name, pair, der=True, **kw):
    """A station whose flash holds the gateway's CA, and `pair` as client.der/client.key (DER, as
    `picocharge provision` writes them) or client.pem/client-key.pem."""
    cfg = station_config("wss://127.0.0.1:%d/ocpp" % gw.port, ca_cert="ca.der", reconnect_max_s=2, **kw)
    files = {"ca.der": certs.ca_der.read_bytes()}
    if pair is not None:
        if der:
            d = gwca.station_files(*pair)
            files.update({"client.der": d["cert_der"], "client.key": d["key_der"]})
            cfg["ocpp"].update(client_cert="client.der", client_key="client.key")
        else:
            files.update({"client.pem": pair[0].read_bytes(), "client-key.pem": pair[1].read_bytes()})
            cfg["ocpp"].update(client_cert="client.pem", client_key="client-key.pem")
    st = station(cfg, name=name)
    for n, data in files.items():
        (st.flash / n).write_bytes(data)
    return st


async def test_firmware__presents_its_client_certificate_and_boots_without_a_password(station, gateway_p3):
    gw, certs = gateway_p3
    st = _with_cert(station, gw, certs, "der", certs.station["CP-1"]).start()
    await st.aexpect("connecting to wss://127.0.0.1:%d/ocpp/CP-1" % gw.port)
    await st.aexpect("boot accepted, heartbeat every")
    assert gw.station_profile == {"CP-1": 3}, gw.station_profile
    assert "CP-1" in gw.sessions
    line = [ln for ln in st.lines if "connecting to wss" in ln][0]
    assert line.endswith("/ocpp/CP-1"), line     # no "(basic auth)": no password configured or sent
    st.stop()
    # a PEM pair copied by hand works too: the board converts it to the DER mbedtls takes
    pem = _with_cert(station, gw, certs, "pem", certs.station["CP-1"], der=False).start()
    await pem.aexpect("boot accepted, heartbeat every")
    assert gw.station_profile == {"CP-1": 3}


async def test_firmware__a_certificate_the_gateway_refuses_is_said_in_words(station, gateway_p3):
    gw, certs = gateway_p3
    other = _with_cert(station, gw, certs, "other-cn", certs.station["CP-OTHER"]).start()
    await other.aexpect("central system refused the credentials (HTTP 401)")
    foreign = _with_cert(station, gw, certs, "foreign", certs.foreign).start()
    await foreign.aexpect("[ocpp] W: link down: the central system closed the wss:// connection before answering (",
                         timeout=30)
    await foreign.aexpect("): it may refuse the station's certificate; check that ocpp.client_cert was issued by "
                         "the CA the central system trusts, is still valid and names this station")
    await foreign.aexpect("reconnecting in", timeout=30)
    assert gw.station_profile == {} and "CP-1" not in gw.sessions


async def test_firmware__a_missing_client_key_is_a_config_error_before_connecting(station, gateway_p3):
    gw, certs = gateway_p3
    st = _with_cert(station, gw, certs, "nokey", certs.station["CP-1"])
    (st.flash / "client.key").unlink()
    st.start()
    await st.aexpect("[config] E: config key 'ocpp.client_key': cannot read client.key on the board's flash "
                    "(missing?): copy the station's private key there with `picocharge provision --client-cert "
                    "FILE --client-key FILE`")
    assert st.proc.wait(20) == 78, st.tail()
    assert not any("connecting to wss" in ln for ln in st.lines), st.tail()
    # a certificate without its key, or over ws://, is refused by the schema
    for url, ocpp, msg in (("wss://127.0.0.1:1/ocpp", {"client_cert": "client.der"},
                            "config key 'ocpp.client_key': is required with ocpp.client_cert"),
                           ("ws://127.0.0.1:1/ocpp", {"client_cert": "client.der", "client_key": "client.key"},
                            "config key 'ocpp.client_cert': is presented over TLS only: ocpp.url must start "
                            "with wss://")):
        cfg = station_config(url, **ocpp)
        bad = station(cfg, name="bad%d" % len(msg)).start()
        await bad.aexpect("[config] E: " + msg)
        assert bad.proc.wait(20) == 78, bad.tail()


def test_tlsca__read_der_takes_der_or_the_first_pem_block_of_any_label(tmp_path):
    # the board's PEM-to-DER for certificates and keys (firmware/tlsca.py), here under CPython;
    # the e2e tests above run it under MicroPython with real PEM files
    import base64

    from hypothesis import given, settings, strategies as stn

    import tlsca      # firmware/ is on sys.path (pyproject's pytest pythonpath)
    f = tmp_path / "f"

    @settings(max_examples=200, deadline=None)
    @given(body=stn.binary(min_size=1, max_size=600), label=stn.sampled_from(
        ["CERTIFICATE", "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"]), as_der=stn.booleans())
    def check(body, label, as_der):
        der = b"\x30" + body
        if as_der:
            f.write_bytes(der)
        else:
            b64 = base64.encodebytes(der)
            f.write_bytes(b"junk before\n-----BEGIN %s-----\n%s-----END %s-----\n-----BEGIN X-----\nAA==\n"
                          b"-----END X-----\n" % (label.encode(), b64, label.encode()))
        assert tlsca.read_der(str(f)) == der

    check()
    for junk in (b"not a certificate\n", b"-----BEGIN CERTIFICATE-----\nAAAA\n", b""):
        f.write_bytes(junk)
        with pytest.raises(ValueError, match="is not a PEM or DER private key"):
            tlsca.read_der(str(f), "private key")


def _rp2040_heap():
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("rp2040_heap", root / "benchmarks" / "rp2040_heap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, root


_RP2, _ROOT = _rp2040_heap()

_RP2_DRIVER = """import gc, sys, ssl
sys.stdin.read(1)
def rd(n):
    with open(n, 'rb') as f:
        return f.read()
gc.collect()
f0 = gc.mem_free()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
gc.collect()
print('@ctx', 'ok', f0 - gc.mem_free())
for name, c, k in (('der', 'c.der', 'k.der'), ('pem', 'c.pem', 'k.pem')):
    ctx = None
    gc.collect()
    f0 = gc.mem_free()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_cert_chain(rd(c), rd(k))
        r = 'ok'
    except Exception as e:
        r = repr(e).replace(' ', '')
    gc.collect()
    print('@chain-' + name, r, f0 - gc.mem_free())
import tlsca
ctx = None
gc.collect()
f0 = gc.mem_free()
try:
    ctx = tlsca.client('ocpp.ca_cert', '', None, ('c.pem', 'k.pem'))
    r = 'ok'
except Exception as e:
    r = repr(e).replace(' ', '')
gc.collect()
print('@tlsca-pem', r, f0 - gc.mem_free())
"""


@pytest.mark.skipif(not (_RP2.RP2_DIR / _RP2.UF2).is_file(), reason="no %s in %s" % (_RP2.UF2, _RP2.RP2_DIR))
def test_rp2__the_pico_w_build_takes_the_client_pair_as_der_and_tlsca_converts_pem(tmp_path):
    # the real MicroPython RPI_PICO_W build in rp2040js (benchmarks/rp2040_heap.py): the choice of
    # DER on flash holds on the rp2 port, not only on the unix port the e2e tests above run
    import re

    certs = tls_certs.make(tmp_path / "pki")
    crt, key = tls_certs.client(certs, "CP-1")
    d = gwca.station_files(crt, key, "CP-1")
    files = [("/c.der", d["cert_der"]), ("/k.der", d["key_der"]), ("/c.pem", crt.read_bytes()),
             ("/k.pem", key.read_bytes()), ("/tlsca.py", (_ROOT / "firmware" / "tlsca.py").read_bytes())]
    out = _RP2.boot(_RP2.build_image(files, _RP2_DRIVER, {"station_id": "CP-1"}), timeout_s=120)
    got = {m[0]: (m[1], int(m[2])) for m in re.findall(r"^@(\S+) (\S+) (\d+)\r?$", out, re.M)}
    assert set(got) == {"ctx", "chain-der", "chain-pem", "tlsca-pem"}, out
    assert got["chain-der"][0] == "ok" and got["tlsca-pem"][0] == "ok", got
    assert got["chain-pem"][0] == "ValueError('invalidkey',)", got      # PEM straight in: refused
    # what the parsed certificate and key hold on the board's heap while connected (~1.4 KB)
    extra = got["chain-der"][1] - got["ctx"][1]
    print("rp2: SSLContext %d B, with the client certificate and key %d B (+%d B)" % (
        got["ctx"][1], got["chain-der"][1], extra))
    assert 0 < extra < 4096, got
