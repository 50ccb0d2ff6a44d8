"""The baseline central system for `picocharge bench`: the `ocpp` package's documented
central-system example (ocpp 2.1 docs, "central_system.py" for OCPP 1.6), kept in its shape:
one `ocpp.v16.ChargePoint` subclass with `@on` handlers, `websockets.serve`, subprotocol
ocpp1.6, one process, schema validation on (the package default).

Only what a benchmark needs is added, and none of it is on the OCPP hot path:
  * handlers for the messages a PicoCharge station sends (the example only has Boot);
  * readings are counted in memory (a MeterValue element = one reading), nothing is stored;
  * `GET /metrics` answers Prometheus text with those counters, like the gateway does;
  * `--port 0` binds a free port and prints `baseline listening on ws://HOST:PORT` when ready.

    python benchmarks/baseline_cs.py --port 0
"""
import argparse
import asyncio
import itertools
import logging
import signal
import sys
from datetime import datetime, timezone
from http import HTTPStatus

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as cp
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

logging.basicConfig(level=logging.WARNING)

COUNTERS = {"readings": 0, "sampled_values": 0, "calls": 0, "connections": 0,
            "transactions_started": 0, "transactions_stopped": 0}
_tx_ids = itertools.count(1)


def _now():
    return datetime.now(timezone.utc).isoformat()


class ChargePoint(cp):
    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kwargs):
        COUNTERS["calls"] += 1
        return call_result.BootNotification(current_time=_now(), interval=10,
                                            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self):
        COUNTERS["calls"] += 1
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status_notification(self, connector_id, error_code, status, **kwargs):
        COUNTERS["calls"] += 1
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag):
        COUNTERS["calls"] += 1
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id, id_tag, meter_start, timestamp, **kwargs):
        COUNTERS["calls"] += 1
        COUNTERS["transactions_started"] += 1
        return call_result.StartTransaction(transaction_id=next(_tx_ids),
                                            id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.meter_values)
    def on_meter_values(self, connector_id, meter_value, **kwargs):
        COUNTERS["calls"] += 1
        COUNTERS["readings"] += len(meter_value)
        COUNTERS["sampled_values"] += sum(len(mv.get("sampled_value", ())) for mv in meter_value)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop_transaction(self, meter_stop, timestamp, transaction_id, **kwargs):
        COUNTERS["calls"] += 1
        COUNTERS["transactions_stopped"] += 1
        return call_result.StopTransaction()


async def on_connect(websocket):
    """For every new charge point that connects, create a ChargePoint instance and start
    listening for messages (the documented example, unchanged in substance)."""
    try:
        websocket.request.headers["Sec-WebSocket-Protocol"]
    except KeyError:
        logging.error("Client hasn't requested any Subprotocol. Closing Connection")
        return await websocket.close()
    if not websocket.subprotocol:
        logging.warning("Protocols Mismatched | Expected Subprotocols: %s,"
                        " but client supports %s | Closing connection",
                        websocket.available_subprotocols,
                        websocket.request.headers["Sec-WebSocket-Protocol"])
        return await websocket.close()
    charge_point_id = websocket.request.path.strip("/").split("/")[-1]
    COUNTERS["connections"] += 1
    try:
        await ChargePoint(charge_point_id, websocket).start()
    except websockets.exceptions.ConnectionClosed:
        pass
    finally:
        COUNTERS["connections"] -= 1


def metrics_text():
    lines = []
    for name, help_ in (("readings", "MeterValue elements received"),
                        ("sampled_values", "sampledValue entries received"),
                        ("calls", "CALLs answered"),
                        ("transactions_started", "StartTransaction answered"),
                        ("transactions_stopped", "StopTransaction answered")):
        lines += ["# HELP baseline_%s_total %s" % (name, help_),
                  "# TYPE baseline_%s_total counter" % name,
                  "baseline_%s_total %d" % (name, COUNTERS[name])]
    lines += ["# TYPE baseline_connected_stations gauge",
              "baseline_connected_stations %d" % COUNTERS["connections"]]
    return "\n".join(lines) + "\n"


def process_request(connection, request):
    if request.path == "/metrics":
        return connection.respond(HTTPStatus.OK, metrics_text())
    return None


async def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000, help="0 = a free port")
    args = ap.parse_args(argv)
    server = await websockets.serve(on_connect, args.host, args.port,
                                    subprotocols=[websockets.Subprotocol("ocpp1.6")],
                                    process_request=process_request)
    host, port = server.sockets[0].getsockname()[:2]
    print("baseline listening on ws://%s:%d" % (host, port), flush=True)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    await stop
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
