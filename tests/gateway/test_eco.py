"""Eco mode (issue 13) with a real broker (mosquitto): a load group's limit follows a value
published on MQTT; the stations (built on the ocpp package) receive limits that rise no faster
than the ramp, fall at once, ignore garbage payloads, and go back to the safe constant when the
values stop for the timeout."""
import asyncio
import json
import time

import paho.mqtt.client as mqtt
from ocpp.routing import on
from ocpp.v16 import call
from ocpp.v16.enums import Action

from picocharge.gateway.eco import BadPayload, EcoLimit, EcoSubscriber, read_value

from support.gwhttp import http
from support.smartstation import SmartStation
from support.stations import Connected, boot

RAMP = 20.0


class TimedStation(SmartStation):
    """Records when each SetChargingProfile arrived."""

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id, cs_charging_profiles):
        self.at = getattr(self, "at", [])
        self.at.append((time.monotonic(), cs_charging_profiles))
        return super().on_set_charging_profile(connector_id, cs_charging_profiles)


async def until(cond, what, timeout=30.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "waited %g s for %s" % (timeout, what)
        await asyncio.sleep(0.05)


def test_eco__read_value_valid_and_invalid():
    assert read_value(b'{"surplus": {"a": 12.5}}', "surplus.a") == 12.5
    assert read_value(b'{"phases": [{"h": 3}, {"h": 7}]}', "phases.1.h") == 7.0
    assert read_value(b"16", "") == 16.0
    for payload, path, why in ((b"not json", "a", "not JSON"), (b'{"a": "12"}', "a", "not a number"),
                               (b'{"a": true}', "a", "not a number"), (b'{"b": 1}', "a", "has no a"),
                               (b'{"a": NaN}', "a", "not a finite number"), (b'{"a": 1e9}', "a", "within"),
                               (b'{"a": [1]}', "a.3", "has no 3"), (b"1" * 1025, "", "at most 1024"),
                               (b"\xff\xfe", "", "not JSON")):
        try:
            read_value(payload, path)
        except BadPayload as e:
            assert why in str(e), (payload, e)
        else:
            raise AssertionError("accepted %r" % payload)


def test_eco__limit_ramps_up_falls_at_once_and_times_out_with_a_clock():
    now = [100.0]
    changes = []
    cfg = {"topic": "t", "path": "v", "scale": 1.0, "floor_a": 2.0, "fallback_a": 6.0, "ramp_a_s": 2.0,
           "timeout_s": 10.0}
    e = EcoLimit(cfg, 32.0, lambda: changes.append(round(e.reported, 2)), "g", clock=lambda: now[0])
    assert (e.value(), e.state()["fallback"]) == (6.0, True)
    assert e.feed(b'{"v": 40}')         # over the group's 32 A: clamped
    assert e.target == 32.0 and e.value() == 6.0
    now[0] += 3.0
    assert e.value() == 12.0            # 2 A/s for 3 s
    now[0] += 7.0
    assert e.value() == 26.0
    e.feed(b'{"v": 1}')                 # under the floor: the floor, at once
    assert e.value() == 2.0 and changes[-1] == 2.0, changes
    assert not e.feed(b'{"v": "x"}') and e.bad == 1 and e.value() == 2.0
    now[0] += 9.0
    e.tick()
    assert (e.value(), e.state()["fallback"]) == (2.0, False)
    now[0] += 1.5                       # 10.5 s without a good value: back to the fallback, by the ramp
    e.tick()
    assert (e.value(), e.state()["fallback"]) == (5.0, True)
    now[0] += 1.0
    e.tick()
    assert (e.value(), changes[-1]) == (6.0, 6.0), changes


async def test_eco__limit_follows_mqtt_with_ramp_ignores_garbage_and_falls_back(gateway, mqtt_broker, monkeypatch,
                                                                                 caplog):
    monkeypatch.setattr(EcoSubscriber, "tick_s", 0.1)
    gw = await gateway(mqtt_url="mqtt://127.0.0.1:%d" % mqtt_broker.port)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mqtt_broker.port)
    pub.loop_start()

    def publish(payload):
        pub.publish("site/pv", payload, qos=1).wait_for_publish(10)

    async with Connected(gw.port, "CP-0", cls=TimedStation) as cp, \
            Connected(gw.port, "CP-1", cls=TimedStation) as cp1:
        try:
            assert (await boot(cp)).status == "Accepted" and (await boot(cp1)).status == "Accepted"
            eco = {"topic": "site/pv", "path": "surplus.a", "floor_a": 0, "fallback_a": 6, "ramp_a_s": RAMP,
                   "timeout_s": 3}
            s, out = await http(gw, "POST", "/api/load-groups", {
                "name": "solar", "limit_a": 32, "phases": 1, "eco": eco,
                "members": [{"station": "CP-0"}, {"station": "CP-1"}]})
            assert s == 201, out
            assert out["eco_state"]["fallback"] is True and out["limit_now_a"] == 6, out
            # the safe constant shared by 2 is 3 A: below 6, so offline they do not charge at all
            assert out["safe_share_a"] == 0.0, out
            await gw.loadbalance.settled()
            tid = (await cp.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0,
                                                       timestamp="2026-06-01T10:00:00Z"))).transaction_id
            await until(lambda: cp.limit_now(1, tid) == 6.0, "the fallback 6 A")
            # wait for the subscription before publishing (the broker keeps nothing for it)
            await until(lambda: gw.loadbalance.eco.connected, "the eco subscriber")
            await asyncio.sleep(0.2)    # SUBACK after CONNACK: no event to wait for from outside
            t_pub = time.monotonic()
            publish(json.dumps({"surplus": {"a": 20}}))
            await until(lambda: cp.limit_now(1, tid) == 20.0, "20 A")
            seen = [(t, float(p["charging_schedule"]["charging_schedule_period"][0]["limit"]))
                    for t, p in cp.at if p["charging_profile_purpose"] == "TxProfile" and t >= t_pub]
            assert len(seen) >= 3, seen     # ramped in steps, not one jump
            assert [a for _t, a in seen] == sorted(a for _t, a in seen), seen
            for t, a in seen:
                # never above what the ramp allows since the value came (load only delays a send)
                assert a <= 6.0 + RAMP * (t - t_pub) + 0.1, (t - t_pub, a, seen)
            # garbage: counted, ignored, the subscriber lives on
            for bad in (b"not json", b'{"surplus": {"a": "x"}}', b'{"surplus": {}}', b"9" * 2000,
                        b'{"surplus": {"a": NaN}}'):
                publish(bad)
            await until(lambda: gw.loadbalance.groups["solar"].eco.bad == 5, "5 bad payloads counted")
            assert cp.limit_now(1, tid) == 20.0
            bad = [r.getMessage() for r in caplog.records if "eco value on site/pv ignored" in r.getMessage()]
            assert bad == ["load group solar: eco value on site/pv ignored: payload is not JSON (1 bad so far)"], bad
            # a lower value is followed at once
            t_pub = time.monotonic()
            publish(b'{"surplus": {"a": 9.5}}')
            await until(lambda: cp.limit_now(1, tid) == 9.5, "down to 9.5 A")
            drops = [a for t, p in cp.at if t >= t_pub and p["charging_profile_purpose"] == "TxProfile"
                     for a in [float(p["charging_schedule"]["charging_schedule_period"][0]["limit"])]]
            assert drops[0] == 9.5, drops
            s, out = await http(gw, "GET", "/api/load-groups/solar")
            st_ = out["eco_state"]
            assert (st_["value"], st_["target_a"], st_["fallback"], st_["bad_payloads"], out["limit_now_a"]) == (
                9.5, 9.5, False, 5, 9.5), out
            # below the floor of 6 A per car: paused
            publish(b'{"surplus": {"a": 4}}')
            await until(lambda: cp.limit_now(1, tid) == 0.0, "paused under 6 A")
            t_last = time.monotonic()
            publish(b'{"surplus": {"a": 14}}')
            await until(lambda: cp.limit_now(1, tid) == 14.0, "14 A")
            # the values stop: timeout_s after the last one the group falls back to the safe 6 A
            await until(lambda: cp.limit_now(1, tid) == 6.0, "the fallback after the timeout")
            assert time.monotonic() - t_last >= 3.0, time.monotonic() - t_last
            s, out = await http(gw, "GET", "/api/load-groups/solar")
            assert (out["eco_state"]["fallback"], out["limit_now_a"]) == (True, 6), out
        finally:
            pub.loop_stop()
            pub.disconnect()
