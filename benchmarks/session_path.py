"""The gateway's own work per MeterValues frame, in one process: StationSession.route_message
from the frame's text to the CALLRESULT's text (read, schema check, handler, readings rows,
answer written), with the store and the socket stubbed. Best of 15 rounds of 5,000 frames,
microseconds per frame. Run it with two checkouts' interpreters to compare them (issue 17 in
docs/performance.md):

    python benchmarks/session_path.py
"""
import asyncio
import json
import time

from picocharge import bench_load
from picocharge.firmware import ocppj
from picocharge.gateway import csms


class _Conn:
    def __init__(self):
        self.sent = 0
        self.last = None

    async def send(self, text):
        self.sent += 1
        self.last = text


class _Metrics:
    messages = 0


class _Gw:
    def __init__(self):
        self.stations = {"CP-1": {"state": "accepted"}}
        self.metrics = _Metrics()
        self.rows = 0

    async def store_readings(self, sid, rows, source):
        self.rows += len(rows)

    def resumed(self, sess):     # a first frame that is no BootNotification: nothing to resend here
        pass


async def _main(rounds=15, n=5000):
    mv = ocppj.meter_value(time.time(), {"energy_wh": 1234, "current_a": 16.2, "voltage_v": 230.1,
                                         "power_w": 3700.2, "temp_c": 25.1}, bench_load.MEASURANDS,
                           "Sample.Periodic")
    uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    frame = json.dumps([2, uid, "MeterValues", ocppj.meter_values(1, 7, [mv])])
    sess = csms.StationSession("CP-1", _Conn(), _Gw())
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            await sess.route_message(frame)
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    conn = sess._connection
    assert conn.sent == rounds * n and conn.last == '[3,"%s",{}]' % uid, (conn.sent, conn.last)
    assert sess.gw.rows == rounds * n, sess.gw.rows
    print("MeterValues frame through route_message: %.1f us (%s)" % (best, csms.__file__))


if __name__ == "__main__":
    asyncio.run(_main())
