"""logonce.LogOnce: a repeating error is logged once with a count, never in a loop."""
import logging

from picocharge.gateway.logonce import LogOnce


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_logonce__the_same_error_is_logged_once_then_once_per_interval_with_its_count(caplog):
    caplog.set_level(logging.WARNING)
    clock = _Clock()
    once = LogOnce(logging.getLogger("t.logonce"), interval=60, clock=clock)
    for _ in range(1000):
        once.warning("station=%s bad telemetry: %s", "CP-1", "temp_c must be a finite number")
    once.warning("station=%s bad telemetry: %s", "CP-2", "temp_c must be a finite number")
    assert [r.getMessage() for r in caplog.records] == [
        "station=CP-1 bad telemetry: temp_c must be a finite number",
        "station=CP-2 bad telemetry: temp_c must be a finite number"], caplog.text
    assert once.suppressed == 999
    clock.t += 61
    once.warning("station=%s bad telemetry: %s", "CP-1", "temp_c must be a finite number")
    assert caplog.records[-1].getMessage() == ("station=CP-1 bad telemetry: temp_c must be a finite number "
                                               "(and 999 more like it in the last 61 s)"), caplog.records[-1]
    once.warning("station=%s bad telemetry: %s", "CP-1", "temp_c must be a finite number", key="k")
    clock.t += 5
    once.warning("station=%s bad telemetry: %s", "CP-1", "another message, same key", key="k")
    once.flush()
    assert [r.getMessage() for r in caplog.records][3:] == [
        "station=CP-1 bad telemetry: temp_c must be a finite number",
        "station=CP-1 bad telemetry: temp_c must be a finite number (and 1 more like it in the last 5 s)"], \
        caplog.text


def test_logonce__many_different_errors_stay_bounded_and_are_never_lost_silently(caplog):
    caplog.set_level(logging.WARNING)
    once = LogOnce(logging.getLogger("t.logonce2"), interval=60, max_keys=8, clock=_Clock())
    for i in range(100):
        once.warning("error %d", i)
        once.warning("error %d", i)
    assert len(once._seen) <= 8, len(once._seen)
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[:2] == ["error 0", "error 1"] and "error 0 (and 1 more like it in the last 0 s)" in msgs, msgs[:20]


def test_logonce__messages_that_all_differ_are_capped_at_burst_lines_per_interval(caplog):
    caplog.set_level(logging.WARNING)
    clock = _Clock()
    once = LogOnce(logging.getLogger("t.logonce3"), interval=60, burst=5, clock=clock)
    for i in range(1000):
        once.warning("station=CP-%d sent %d", i, i)
    assert [r.getMessage() for r in caplog.records] == ["station=CP-%d sent %d" % (i, i) for i in range(5)]
    clock.t += 60
    once.warning("station=CP-X sent again")
    assert [r.getMessage() for r in caplog.records][5:] == [
        "995 more messages were not logged in the last 60 s (at most 5 lines per 60 s)", "station=CP-X sent again"]
