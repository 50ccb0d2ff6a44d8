"""`picocharge bench` samples the MQTT outbox depth through the window (GET /metrics), so a run
shows whether the uplink keeps up (the depth stays flat) or falls behind (it grows)."""
import time

from picocharge import bench_run


class _Cs:
    def __init__(self):
        self.depth = 0

    def metrics(self):
        self.depth += 100
        return {'picocharge_outbox_depth{uplink="mqtt"}': float(self.depth),
                'picocharge_outbox_depth{uplink="thingspeak"}': 7.0}


def test_bench_depth__sampled_every_interval_through_the_window():
    out = []
    w0 = time.time()
    bench_run.sample_depth(_Cs(), w0, w0 + 0.4, 0.1, out)
    assert [d for _t, d in out] == [100, 200, 300, 400, 500], out
    assert all(0 <= t <= 1.0 for t, _d in out), out
