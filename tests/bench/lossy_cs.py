"""The baseline central system with a defect put in on purpose: it acknowledges every
MeterValues but stores (counts) only two calls out of three. The benchmark must report
the difference as lost readings and fail."""
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import baseline_cs as b  # noqa: E402
from ocpp.routing import on  # noqa: E402
from ocpp.v16 import call_result  # noqa: E402
from ocpp.v16.enums import Action  # noqa: E402

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
