"""Eco mode (issue 13): a load group's limit follows a live value on MQTT, a PV inverter's
surplus or a building meter's headroom, instead of a constant.

`EcoLimit` is one group's: the last good value (from a topic, at a dotted JSON path, times a
scale, clamped between the floor and the group's limit), the limit it makes now (rising at
most ramp_a_s per second, falling at once: headroom that shrinks is a hard edge), and the safe
constant it falls back to before the first value and when none came for timeout_s. A payload
that is not a number where the path says (too long, not JSON, no such path, not finite) is
counted and logged, once a minute with the count; it changes nothing.

`EcoSubscriber` is the gateway's one MQTT client for every eco group (paho-mqtt, its network
thread; messages handed to the event loop), on the broker of --mqtt-url.
"""
import asyncio
import json
import logging
import math
import os
import ssl
import time

import paho.mqtt.client as mqtt

from .logonce import LogOnce
from .uplinks import parse_mqtt_url

log = logging.getLogger(__name__)
_ONCE = LogOnce(log)

MAX_PAYLOAD = 1024          # bytes of a value's message at most
MAX_VALUE = 1e7             # |value| at most (after the JSON path, before the scale)
TICK_S = 1.0                # how often a ramping or waiting limit is looked at
STEP_A = 0.5                # a ramping limit is re-planned with each change this big (and at its target)


class BadPayload(ValueError):
    pass


def read_value(payload, path):
    """The number at dotted `path` ("" for the payload itself; a list index is a number) of a
    JSON payload; BadPayload says why not."""
    if not isinstance(payload, (bytes, bytearray)) or len(payload) > MAX_PAYLOAD:
        raise BadPayload("payload of %d bytes (at most %d)" % (len(payload), MAX_PAYLOAD))
    try:
        v = json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadPayload("payload is not JSON")
    for part in path.split(".") if path else ():
        if isinstance(v, dict) and part in v:
            v = v[part]
        elif isinstance(v, list) and part.isdigit() and int(part) < len(v):
            v = v[int(part)]
        else:
            raise BadPayload("payload has no %s (path %s)" % (part[:40], path))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadPayload("%s is %s, not a number" % (path or "payload", type(v).__name__))
    v = float(v)
    if not math.isfinite(v) or abs(v) > MAX_VALUE:
        raise BadPayload("%s %r is not a finite number within ±%g" % (path or "payload", v, MAX_VALUE))
    return v


class EcoLimit:
    """One group's live limit. `cfg`: the group's eco (loadbalance.Eco as a dict); `cap`: its limit_a."""

    def __init__(self, cfg, cap, on_change, name="", clock=time.monotonic):
        self.cfg = cfg
        self.cap = cap
        self.name = name
        self.on_change = on_change
        self.clock = clock
        self.target = None          # the last good value, clamped (A)
        self.raw = None             # as it came (before scale and clamp)
        self.at = None              # when it came (clock)
        self.eff = float(cfg["fallback_a"])
        self.t = clock()
        self.reported = self.eff
        self.bad = 0
        self.good = 0
        self.was_fallback = True

    def _goal(self, now):
        if self.at is None or now - self.at > self.cfg["timeout_s"]:
            return float(self.cfg["fallback_a"]), True
        return self.target, False

    def value(self):
        """The limit now: toward the goal at most ramp_a_s per second up, at once down."""
        now = self.clock()
        goal, _fb = self._goal(now)
        if goal <= self.eff:
            self.eff = goal
        else:
            self.eff = min(goal, self.eff + self.cfg["ramp_a_s"] * max(0.0, now - self.t))
        self.t = now
        return self.eff

    def feed(self, payload):
        try:
            v = read_value(payload, self.cfg["path"])
        except BadPayload as e:
            self.bad += 1
            _ONCE.warning("load group %s: eco value on %s ignored: %s (%d bad so far)", self.name,
                          self.cfg["topic"], e, self.bad, key=("eco-bad", self.name))
            return False
        self.value()    # the ramp so far, at the old goal
        self.raw = v
        self.target = max(float(self.cfg["floor_a"]), min(self.cap, v * self.cfg["scale"]))
        self.at = self.clock()
        self.good += 1
        self.tick()
        return True

    def tick(self):
        """Tell the planner when the limit moved enough (or reached its goal, or timed out)."""
        v = self.value()
        goal, fb = self._goal(self.clock())
        if fb and not self.was_fallback:
            log.warning("load group %s: no eco value on %s for %g s: back to the safe %g A", self.name,
                        self.cfg["topic"], self.cfg["timeout_s"], self.cfg["fallback_a"])
        self.was_fallback = fb
        if abs(v - self.reported) >= STEP_A or (v != self.reported and v == goal):
            self.reported = v
            self.on_change()

    def state(self):
        now = self.clock()
        _g, fb = self._goal(now)
        return {"value": self.raw, "target_a": self.target,
                "age_s": None if self.at is None else round(now - self.at, 1),
                "fallback": fb, "good_payloads": self.good, "bad_payloads": self.bad}


class EcoSubscriber:
    """One MQTT client following the eco groups' topics."""

    tick_s = TICK_S

    def __init__(self, url):
        self.cfg = parse_mqtt_url(url)
        self.follows = {}           # group name -> EcoLimit
        self.client = None
        self.loop = None
        self.task = None
        self.connected = False

    def follow(self, name, eco):
        self.follows[name] = eco
        eco.name = name
        if self.client is None:
            self._start()
        elif self.connected:
            self.client.subscribe(eco.cfg["topic"], qos=0)

    def unfollow(self, name):
        eco = self.follows.pop(name, None)
        if eco is not None and self.client is not None and self.connected and \
                not any(e.cfg["topic"] == eco.cfg["topic"] for e in self.follows.values()):
            self.client.unsubscribe(eco.cfg["topic"])

    def _start(self):
        self.loop = asyncio.get_running_loop()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="picocharge-eco-%d-%d" % (os.getpid(), id(self)),
                        protocol=mqtt.MQTTv311, clean_session=True)
        if self.cfg["user"]:
            c.username_pw_set(self.cfg["user"], self.cfg["password"])
        if self.cfg["tls"]:
            c.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 30)
        self.client = c
        c.connect_async(self.cfg["host"], self.cfg["port"], 30)
        c.loop_start()
        self.task = self.loop.create_task(self._ticker())

    # paho's thread: everything goes to the loop
    def _on_connect(self, c, ud, flags, rc, props=None):
        if rc.is_failure:
            _ONCE.warning("eco: MQTT broker %s:%d refused the connection: %s", self.cfg["host"], self.cfg["port"], rc,
                          key=("eco-connect",))
            return
        self.connected = True
        log.info("eco: following %d topic(s) on %s:%d", len(self.follows), self.cfg["host"], self.cfg["port"])
        for t in sorted({e.cfg["topic"] for e in list(self.follows.values())}):
            c.subscribe(t, qos=0)

    def _on_disconnect(self, c, ud, flags, rc, props=None):
        self.connected = False
        _ONCE.warning("eco: MQTT connection lost (%s): the groups fall back after their timeout", rc,
                      key=("eco-disconnect",))

    def _on_message(self, c, ud, msg):
        try:
            self.loop.call_soon_threadsafe(self._deliver, msg.topic, bytes(msg.payload[:MAX_PAYLOAD + 1]))
        except RuntimeError:    # the loop is closed: the gateway is stopping
            pass

    def _deliver(self, topic, payload):
        for eco in list(self.follows.values()):
            if eco.cfg["topic"] == topic:
                try:
                    eco.feed(payload)
                except Exception:   # never the subscriber's end
                    _ONCE.exception("eco: value on %s not taken", topic, key=("eco-feed", topic))

    async def _ticker(self):
        while True:
            await asyncio.sleep(self.tick_s)
            for eco in list(self.follows.values()):
                try:
                    eco.tick()
                except Exception:
                    _ONCE.exception("eco: tick failed", key=("eco-tick",))

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
        if self.client is not None:
            c, self.client = self.client, None
            c.disconnect()
            await asyncio.get_running_loop().run_in_executor(None, c.loop_stop)
