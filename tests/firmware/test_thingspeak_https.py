"""The ThingSpeak direct upload over HTTPS (the firmware's default URL is
https://api.thingspeak.com), against the local ThingSpeak server behind TLS."""
import ssl
import threading
import time

from support.fake_thingspeak import FakeThingSpeak
from support.firmware import TLS, base_config



def https_thingspeak():
    """FakeThingSpeak serving TLS (tests/support/tls/cert.pem) on its own port."""
    ts = FakeThingSpeak(min_interval=1).start()
    ts.server.shutdown()  # re-serve the same listening socket, wrapped in TLS
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(TLS / "cert.pem"), str(TLS / "key.pem"))
    ts.server.socket = ctx.wrap_socket(ts.server.socket, server_side=True)
    threading.Thread(target=ts.server.serve_forever, daemon=True).start()
    return ts, "https://127.0.0.1:%d" % ts.server.server_address[1]


def test_station__thingspeak_writes_over_https(station):
    ts, url = https_thingspeak()
    ch = ts.add_channel("WKEY1234")
    try:
        st = station(base_config(thingspeak={"enabled": True, "url": url, "write_key": "WKEY1234",
                                             "channel_id": ch.id, "min_interval_s": 1})).start()
        st.expect("[thingspeak] I: stored entry 2", timeout=30)
        e = ts.entries(ch.id)[-1]
        assert sorted(k for k in e if k.startswith("field")) == ["field%d" % i for i in range(1, 9)], e
        assert e["field1"] == "24" and e["field2"] == "45" and abs(float(e["field4"]) - 230) < 3, e
        assert "WKEY1234" not in st.output() and "write failed" not in st.output(), st.output()
        # no thingspeak.ca_cert: encrypted, not verified, said once per link up (a write each second)
        assert st.output().count("[thingspeak] W: TLS without verifying the server's certificate "
                                 "(thingspeak.ca_cert not set)") == 1, st.output()
    finally:
        ts.stop()


def test_station__thingspeak_https_to_a_plain_http_server_is_not_counted(station):
    ts = FakeThingSpeak(min_interval=1).start()
    ch = ts.add_channel("WKEY1234")
    try:
        st = station(base_config(thingspeak={"enabled": True, "url": ts.url.replace("http:", "https:"),
                                             "write_key": "WKEY1234", "min_interval_s": 1})).start()
        st.expect("[thingspeak] W: write failed", timeout=30)
        st.expect("[meter] I:")
        assert ts.entries(ch.id) == [] and "stored entry" not in st.output(), st.output()
    finally:
        ts.stop()


def test_station__thingspeak_https_verified_with_thingspeak_ca_cert(station, tmp_path):
    from support import tls_certs

    c = tls_certs.make(tmp_path / "certs")
    servers = []
    for cert, key in ((c.cert, c.key), (c.cert, c.key), (c.other_cert, c.other_key)):
        ts = FakeThingSpeak(min_interval=1).start()
        ts.server.shutdown()
        ts.server.socket = tls_certs.server_context(cert, key).wrap_socket(ts.server.socket, server_side=True)
        threading.Thread(target=ts.server.serve_forever, daemon=True).start()
        servers.append((ts, ts.add_channel("WKEY1234"), "https://127.0.0.1:%d" % ts.server.server_address[1]))
    try:
        made = []
        for name, (ts, ch, url), ca in zip(("good", "wrong-ca", "other-host"), servers,
                                           (c.ca_der, c.wrong_der, c.ca_der)):
            st = station(base_config(thingspeak={"enabled": True, "url": url, "write_key": "WKEY1234",
                                                 "channel_id": ch.id, "min_interval_s": 1,
                                                 "ca_cert": "ts-ca.der"}), name=name)
            (st.flash / "ts-ca.der").write_bytes(ca.read_bytes())
            made.append(st.start())
        good, wrong, other = made
        good.expect("[thingspeak] I: stored entry 2", timeout=30)
        assert "write failed" not in good.output() and "not verifying" not in good.output(), good.output()
        wrong.expect("[thingspeak] W: write failed: server certificate refused (The certificate is not "
                     "correctly signed by the trusted CA): check thingspeak.ca_cert", timeout=30)
        other.expect("[thingspeak] W: write failed: server certificate refused (The certificate Common "
                     "Name (CN) does not match with the expected CN)", timeout=30)
        for st, (ts, ch, _url) in zip((wrong, other), servers[1:]):
            st.expect("[thingspeak] W: write failed: server certificate refused", timeout=30)  # retried
            # the write key never reached the server: no request got through TLS
            assert ts.requests == [] and ts.entries(ch.id) == [], ts.requests
        for st in made:
            assert "WKEY1234" not in st.output(), st.output()
    finally:
        for ts, _ch, _url in servers:
            ts.stop()
