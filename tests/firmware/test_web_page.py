"""The board's own status page (issue 16), served by the real firmware on the unix board and
rendered by headless Chromium at a phone's size: the station's values in cards with one
number format per unit, labels and units from fields.py, a page that refreshes itself, and
never a secret."""
import re
import subprocess
import urllib.request

import fields
from support.chromium import chromium
from support.dual import mp_run
from support.net import free_port
from support.firmware import base_config, get_json

SECRETS = ("wifi-secret-1", "mq-secret-9", "TSKEYSECRET")


def _dump_dom(tmp_path, url):
    """The page as a phone-sized headless Chromium has it after running its script."""
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions",
            "--user-data-dir=%s" % (tmp_path / "chromium-profile"), "--window-size=390,844",
            "--virtual-time-budget=8000", "--dump-dom", url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_web_page__styled_phone_sized_refreshing_formats_from_fields_no_secret(station, tmp_path):
    port = free_port()
    cfg = base_config(web={"enabled": True, "port": port},
                      mqtt={"enabled": True, "host": "127.0.0.1", "port": free_port(), "password": "mq-secret-9"},
                      thingspeak={"enabled": True, "url": "http://127.0.0.1:%d" % free_port(),
                                  "write_key": "TSKEYSECRET"})
    st = station(cfg).start()
    st.expect("[web] I: status page on port %d" % port)
    st.expect("[meter] I:")
    url = "http://127.0.0.1:%d/" % port
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"] == "text/html; charset=utf-8", dict(r.headers)
        raw = r.read().decode()
    # the page as sent: phone viewport, styles, refresh every 3 s, the fields of fields.py
    assert raw.startswith("<!doctype html>") and raw.endswith("</html>"), raw[-200:]
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in raw, raw[:400]
    assert "<title>PicoCharge CP-7</title>" in raw and "<style>" in raw, raw[:600]
    assert "setInterval(u,3000)" in raw, raw
    want = ",".join('["%s", "%s", "%s"]' % (r[fields.KEY], r[fields.LABEL], r[fields.UNIT]) for r in fields.READINGS)
    assert "var F=[%s]," % want in raw, raw

    before = get_json(url + "api/status")["counters"]["web_requests"]
    dom = _dump_dom(tmp_path, url)
    # it refreshed itself: the browser asked for the page once and for /api/status at load and
    # every 3 s of the 8 s it was given (the counter counts this request too)
    asked = get_json(url + "api/status")["counters"]["web_requests"] - before - 1
    print("the browser asked %d times" % asked)
    assert asked >= 1 + 3, asked
    main = re.search(r'<main id="m">(.*?)</main>', dom, re.S).group(1)
    cards = re.findall(r'<div class="c"><div class="l">([^<]+)</div><div class="v">([^<]+)</div></div>', main)
    shown = dict(cards)
    # every reading the station has, under its fields.py label (the status code is not a reading)
    labels = [r[fields.LABEL] for r in fields.READINGS]
    assert [c[0] for c in cards] == labels, dom
    # one format per unit: decimals fixed per unit, units as fields.py has them (degC as °C)
    formats = {"degC": r"-?\d+\.\d °C", "%RH": r"\d+ %", "A": r"-?\d+\.\d\d A", "V": r"\d+\.\d V",
               "W": r"-?\d+ W", "Wh": r"\d+\.\d Wh"}
    for r in fields.READINGS:
        label, unit = r[fields.LABEL], r[fields.UNIT]
        assert re.fullmatch(formats[unit], shown[label]), (label, shown[label])
    assert re.search(r'<span id="st" class="(Charging|Available)">(Charging|Available)', dom), dom
    foot = re.search(r'<footer id="f">([^<]+)</footer>', dom).group(1)
    assert "wifi up" in foot and "firmware " in foot and re.search(r"\d+\.\d KB free", foot), foot
    for secret in SECRETS:
        assert secret not in raw and secret not in dom and secret not in st.output(), secret


def test_web_page__small_pieces_and_the_station_id_escaped():
    """Under the unix port: the page comes in pieces of at most 192 bytes (no large block at
    any time) and the station's id and status are HTML-escaped."""
    out = mp_run(r"""
import sys, webpage
page = list(webpage.pieces('CP<"&>', "Faulted"))
html = "".join(p if isinstance(p, str) else p.decode() for p in page)
print(max(len(p) for p in page), html.count("CP&lt;&quot;&amp;&gt;"), 'CP<"' in html,
      '<span id="st">Faulted</span>' in html)
""")
    assert out.split() == ["192", "2", "False", "True"], out
