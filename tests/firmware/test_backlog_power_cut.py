"""Power cuts while the backlog is being sent: the real firmware on the unix board, a backlog
of 1,200 readings on its flash, SIGKILLed twice in the middle of publishing them to a real
mosquitto, started again on the same flash each time. Every reading arrives, in order; a
reading arrives twice only if it was the one in flight at a cut (at most one a cut); the
board boots every time."""
import json
import threading

import paho.mqtt.client as mqtt

import flashq
from support.firmware import base_config

T0 = 1764500000
N = 1200


class Telemetry:
    def __init__(self, port):
        self.seqs = []
        self.cond = threading.Condition()   # notified on each message
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-cut")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("picocharge/+/telemetry", qos=1)
        self.c.loop_start()

    def _on_message(self, c, u, m):
        seq = json.loads(m.payload).get("seq")   # none: the latest reading, once all is sent
        with self.cond:
            if seq is not None:
                self.seqs.append(seq)
            self.cond.notify_all()

    def wait(self, n, timeout, st):
        with self.cond:
            if self.cond.wait_for(lambda: len(self.seqs) >= n, timeout):
                return
        raise AssertionError("%d of %d readings within %ds; console:\n%s" % (
            len(self.seqs), n, timeout, "\n".join(st.lines[-40:])))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_backlog__power_cuts_while_sending_lose_nothing_and_double_at_most_the_one_in_flight(
        station, mqtt_broker):
    sub = Telemetry(mqtt_broker.port)
    # a 96 KB budget (the default is 32 KB), so that the 1,200 are kept whole, not thinned
    cfg = base_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": mqtt_broker.port,
                            "interval_s": 60, "keepalive_s": 30}, backlog={"flash_kb": 96})
    st = station(cfg)
    # 1,200 readings (3 h 20 min at 10 s) waiting on the board's flash, as after an outage
    q = flashq.FlashQ(str(st.flash / "mqtt_backlog"), budget=96 * 1024).load()
    p = flashq.pack_reading({"temp_c": 24.0, "humidity": 45.0, "current_a": 0.0, "voltage_v": 230.0,
                             "power_w": 0.0, "energy_wh": 1.0, "chip_temp_c": 30.0,
                             "status": "Available", "fault": None})
    for i in range(N):
        q.append(T0 + 10 * i, p)
    assert q.thinned == 0
    consoles = []   # each boot's console (a start begins a new one)
    try:
        cuts = 0
        for upto in (300, 800):
            st.start()
            st.expect("[mqtt] I: sending", timeout=30)   # the board booted and sends its backlog
            sub.wait(upto, 60, st)
            st.kill()                 # power cut: SIGKILL, in the middle of the backlog
            st.wait(5)
            consoles.append(st.output())
            cuts += 1
            assert len(sub.seqs) < N, "the backlog was all sent before the cut: nothing tested"
        st.start()
        st.expect("[mqtt] I: sending", timeout=30)
        st.expect("[mqtt] I: backlog sent", timeout=60)
    finally:
        st.stop()
        consoles.append(st.output())
        sub.close()
    seqs = sub.seqs
    for out in consoles:
        assert "Traceback" not in out, out
    got = sorted(set(seqs))
    assert got[:N] == list(range(1, N + 1)), [s for s in range(1, N + 1) if s not in set(seqs)][:20]
    doubled = len(seqs) - len(got)
    assert doubled <= cuts, (doubled, cuts)
    # in order: each session sends on from where the last acknowledged one was
    for a, b in zip(seqs, seqs[1:]):
        assert b == a + 1 or b == a, (a, b)
