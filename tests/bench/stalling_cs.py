"""The baseline central system with its event loop held for 11 s once the stations have begun
to stop: the first GET /metrics after the first StopTransaction finds the loop busy and times
out (the bench waits 10 s), as our gateway's did after the StopTransactions of 10,000 stations
(LoadBalancer.stopped walked every open transaction for each, minutes in all). The bench must
ask again until its catch-up time, and count what was stored."""
import asyncio
import importlib.util
import time
from pathlib import Path

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

# run as a script by tests/bench/test_bench.py: benchmarks/baseline_cs.py loaded from its file
_spec = importlib.util.spec_from_file_location(
    "baseline_cs", Path(__file__).resolve().parents[2] / "benchmarks" / "baseline_cs.py")
b = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(b)

_state = {"stopping": False, "stalled": False}


class StoppingChargePoint(b.ChargePoint):
    @on(Action.stop_transaction)
    def on_stop_transaction(self, meter_stop, timestamp, transaction_id, **kwargs):
        _state["stopping"] = True
        b.COUNTERS["calls"] += 1
        b.COUNTERS["transactions_stopped"] += 1
        return call_result.StopTransaction()


_answer = b.process_request


def process_request(connection, request):
    if request.path == "/metrics" and _state["stopping"] and not _state["stalled"]:
        _state["stalled"] = True
        time.sleep(11)      # the whole loop held: this answer comes after the bench gave up on it
    return _answer(connection, request)


b.ChargePoint = StoppingChargePoint
b.process_request = process_request

if __name__ == "__main__":
    asyncio.run(b.main())
