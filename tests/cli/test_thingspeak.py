"""picocharge thingspeak create-channel against a server following ThingSpeak's channel API."""
import json

import pytest

from support.fake_thingspeak import FakeThingSpeak

LABELS = {"field1": "Enclosure temperature (degC)", "field2": "Enclosure humidity (%RH)",
          "field3": "Current (A)", "field4": "Voltage (V)", "field5": "Power (W)",
          "field6": "Energy (Wh)", "field7": "Board temperature (degC)", "field8": "Status code"}


@pytest.fixture
def ts():
    s = FakeThingSpeak(account_key="ACCT-KEY-1").start()
    yield s
    s.stop()


def test_thingspeak__create_channel_names_the_fields_and_masks_the_key(ts, pc):
    r = pc("thingspeak", "create-channel", "--account-key", "ACCT-KEY-1", "--name", "Depot 3", "--url", ts.url)
    assert r.exit_code == 0, r.output
    (cid, ch), = ts.channels.items()
    assert ch.name == "Depot 3" and ch.fields == LABELS, ch.fields
    method, path, body = ts.requests[-1]
    assert (method, path) == ("POST", "/channels.json"), ts.requests
    assert body["api_key"] == "ACCT-KEY-1" and body["public_flag"] == "false", body
    assert r.stdout.splitlines()[0] == "created ThingSpeak channel %d (Depot 3)" % cid, r.stdout
    assert ch.write_key not in r.output and "ACCT-KEY-1" not in r.output, r.output
    assert "write key: %s%s" % ("*" * (len(ch.write_key) - 4), ch.write_key[-4:]) in r.stdout, r.stdout


def test_thingspeak__create_channel_json_and_show_key(ts, pc, monkeypatch):
    monkeypatch.setenv("PICOCHARGE_THINGSPEAK_URL", ts.url)
    monkeypatch.setenv("PICOCHARGE_THINGSPEAK_ACCOUNT_KEY", "ACCT-KEY-1")
    r = pc("thingspeak", "create-channel", "--show-key", "--json")
    assert r.exit_code == 0, r.output
    (cid, ch), = ts.channels.items()
    out = json.loads(r.stdout)
    assert out == {"channel_id": cid, "write_key": ch.write_key, "read_key": "R%014d" % cid,
                   "name": "PicoCharge station", "fields": LABELS}, out


def test_thingspeak__wrong_account_key_and_missing_key(ts, pc):
    r = pc("thingspeak", "create-channel", "--account-key", "WRONG", "--url", ts.url)
    assert r.exit_code == 1, r.output
    assert "refused the account key (HTTP 401)" in r.output and "My Profile" in r.output, r.output
    assert ts.channels == {}
    r = pc("thingspeak", "create-channel", "--url", ts.url)
    assert r.exit_code == 2 and "--account-key" in r.output, r.output


def test_thingspeak__unreachable_server(pc):
    from support.net import free_port

    r = pc("thingspeak", "create-channel", "--account-key", "K", "--url", "http://127.0.0.1:%d" % free_port())
    assert r.exit_code == 1 and "cannot reach ThingSpeak" in r.output, r.output


def test_thingspeak__create_channel_prints_the_read_key_a_gateway_needs(ts, pc):
    """The channel is private unless --public; its read key (from ThingSpeak's answer) is printed,
    masked unless --show-key, with the gateway's add-station line that takes it."""
    r = pc("thingspeak", "create-channel", "--account-key", "ACCT-KEY-1", "--url", ts.url)
    assert r.exit_code == 0, r.output
    (cid, ch), = ts.channels.items()
    assert ch.public is False, ch.public
    lines = r.stdout.splitlines()
    assert "read key:  %s%s  (--show-key to print it)" % ("*" * (len(ch.read_key) - 4), ch.read_key[-4:]) in lines, \
        r.stdout
    assert ch.read_key not in r.output, r.output
    assert lines[-1] == ("  or: picocharge gateway add-station <station-id> --thingspeak-channel %d "
                         "--thingspeak-key <write key> --thingspeak-read-key <read key>" % cid), r.stdout
    r = pc("thingspeak", "create-channel", "--account-key", "ACCT-KEY-1", "--url", ts.url, "--show-key")
    assert r.exit_code == 0, r.output
    ch = ts.channels[max(ts.channels)]
    lines = r.stdout.splitlines()
    assert "read key:  %s" % ch.read_key in lines, r.stdout
    assert lines[-1].endswith("--thingspeak-key %s --thingspeak-read-key %s" % (ch.write_key, ch.read_key)), r.stdout
    r = pc("thingspeak", "create-channel", "--account-key", "ACCT-KEY-1", "--url", ts.url, "--public")
    assert r.exit_code == 0, r.output
    ch = ts.channels[max(ts.channels)]
    assert ch.public is True and r.stdout.splitlines()[-1].endswith("--thingspeak-key <write key>"), r.stdout
