"""The baseline central system with a defect put in on purpose: it acknowledges every
MeterValues but stores (counts) only two calls out of three. The benchmark must report
the difference as lost readings and fail."""
import asyncio
import importlib.util
from pathlib import Path

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

# run as a script by tests/bench/test_bench.py: benchmarks/baseline_cs.py loaded from its file
_spec = importlib.util.spec_from_file_location(
    "baseline_cs", Path(__file__).resolve().parents[2] / "benchmarks" / "baseline_cs.py")
b = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(b)

_seen = [0]


class LossyChargePoint(b.ChargePoint):
    @on(Action.meter_values)
    def on_meter_values(self, connector_id, meter_value, **kwargs):
        _seen[0] += 1
        if _seen[0] % 3:
            b.COUNTERS["readings"] += len(meter_value)
        return call_result.MeterValues()


b.ChargePoint = LossyChargePoint

if __name__ == "__main__":
    asyncio.run(b.main())
