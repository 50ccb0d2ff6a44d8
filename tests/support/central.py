"""A central system built on the `ocpp` package (v16 ChargePoint with @on handlers) on a
websockets server at 127.0.0.1:<free port>, recording every frame in both directions, and the
checks the firmware tests make of what a station sent (schemas, sampled values, timestamps).

`python -m tests.support.central --port 9000` (from the repository root) runs it standalone."""
import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import websockets
from websockets.asyncio.server import basic_auth
import ocpp
from ocpp.routing import on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from .net import free_port

SCHEMAS = Path(ocpp.__file__).parent / "v16" / "schemas"
_schema_cache = {}


def schema_for(action, response=False):
    name = action + ("Response" if response else "")
    if name not in _schema_cache:
        _schema_cache[name] = json.loads((SCHEMAS / (name + ".json")).read_text())
    return _schema_cache[name]


def validate_outgoing(frames):
    """Check every frame the station sent against the OCPP 1.6 JSON schemas shipped in the
    `ocpp` package: CALLs by action, CALLRESULTs by the action of the CALL they answer."""
    actions = {}
    for d, msg in frames:
        if d == "cs" and msg[0] == 2:
            actions[msg[1]] = msg[2]
    n = 0
    for d, msg in frames:
        if d != "cp":
            continue
        if msg[0] == 2:
            jsonschema.validate(msg[3], schema_for(msg[2]))
            n += 1
        elif msg[0] == 3 and msg[1] in actions:
            jsonschema.validate(msg[2], schema_for(actions[msg[1]], True))
            n += 1
    return n


def now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Recorder:
    """The server connection as the ocpp ChargePoint sees it, recording frames."""

    def __init__(self, conn, cs):
        self.conn = conn
        self.cs = cs

    async def recv(self):
        raw = await self.conn.recv()
        self.cs._record("cp", raw)
        return raw

    async def send(self, raw):
        self.cs._record("cs", raw)
        await self.conn.send(raw)


class CentralCP(OcppChargePoint):
    """The central system's view of one station."""

    cs = None

    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor, charge_point_model, **kw):
        return call_result.BootNotification(current_time=now_iso(), interval=self.cs.heartbeat,
                                            status=self.cs.boot_status)

    def _maybe_fail(self, action):
        if self.cs.fail.get(action):
            self.cs.fail[action] -= 1
            raise RuntimeError("central system failed to process %s" % action)  # -> CALLERROR

    @on(Action.heartbeat)
    def on_heartbeat(self):
        self._maybe_fail("Heartbeat")
        return call_result.Heartbeat(current_time=now_iso())

    @on(Action.status_notification)
    def on_status(self, connector_id, error_code, status, **kw):
        self._maybe_fail("StatusNotification")
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info={"status": self.cs.auth_status})

    @on(Action.start_transaction)
    def on_start(self, connector_id, id_tag, meter_start, timestamp, **kw):
        self.cs.next_tx += 1
        return call_result.StartTransaction(transaction_id=self.cs.next_tx,
                                            id_tag_info={"status": self.cs.auth_status})

    @on(Action.stop_transaction)
    async def on_stop(self, transaction_id, meter_stop, timestamp, **kw):
        await asyncio.sleep(self.cs.delay.get("StopTransaction", 0))
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter(self, connector_id, meter_value, **kw):
        self._maybe_fail("MeterValues")
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, **kw):
        return call_result.DataTransfer(status=self.cs.data_transfer)


class CentralSystem:
    """Start with `await cs.start()`; `cs.frames` is [(direction, parsed JSON)] with direction
    "cp" (station -> central system) or "cs"; `await cs.call(payload)` sends a CALL."""

    def __init__(self, port=None, heartbeat=2, boot_status="Accepted", auth_status="Accepted",
                 credentials=None, subprotocols=("ocpp1.6",)):
        self.port = port or free_port()
        self.heartbeat = heartbeat
        self.boot_status = boot_status
        self.auth_status = auth_status
        self.credentials = credentials
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.next_tx = 1000
        self.fail = {}   # action -> how many of the next CALLs to answer with a CALLERROR
        self.delay = {}  # action -> seconds to wait before answering it (StopTransaction)
        self.data_transfer = "Accepted"  # the answer to every DataTransfer
        self.frames = []
        self.opened = []  # len(frames) when each connection was opened ...
        self.closed = []  # ... and (len(frames), close code) when it ended
        self.paths = []
        self.server = None
        self.cp = None
        self.conns = []
        self.connected = asyncio.Event()
        self._waiters = set()   # asyncio.Events set on each frame (wait_for)
        self.cls = type("CP", (CentralCP,), {"cs": self})

    @property
    def url(self):
        return "ws://127.0.0.1:%d/ocpp" % self.port

    def _record(self, direction, raw):
        self.frames.append((direction, json.loads(raw)))
        for ev in self._waiters:
            ev.set()

    async def _handler(self, conn):
        self.paths.append(conn.request.path)
        self.conns.append(conn)
        self.opened.append(len(self.frames))
        station = conn.request.path.rsplit("/", 1)[-1]
        self.cp = self.cls(station, _Recorder(conn, self))
        self.connected.set()
        try:
            await self.cp.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.append((len(self.frames), conn.close_code))

    async def start(self):
        kw = {}
        if self.credentials:
            kw["process_request"] = basic_auth(realm="ocpp", credentials=self.credentials)
        self.server = await websockets.serve(self._handler, "127.0.0.1", self.port,
                                             subprotocols=self.subprotocols, **kw)
        return self

    async def stop(self):
        """Kill the central system: drop the connections and stop listening."""
        if self.server:
            self.server.close()
            for c in self.conns:
                c.transport.abort()
            await self.server.wait_closed()
            self.server = None
        self.conns = []
        self.connected = asyncio.Event()

    async def call(self, payload, timeout=10):
        return await asyncio.wait_for(self.cp.call(payload), timeout)

    # --- reading the record -----------------------------------------------------------
    def calls(self, action=None, direction="cp"):
        return [m for d, m in self.frames if d == direction and m[0] == 2
                and (action is None or m[2] == action)]

    def actions(self):
        return [m[2] for d, m in self.frames if d == "cp" and m[0] == 2]

    async def wait_for(self, pred, timeout=20, what="frame", station=None):
        """The first recorded frame (direction, message) for which pred holds, waiting for it
        to arrive; gives up early if `station` (a FirmwareProcess) has ended."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        changed = asyncio.Event()
        self._waiters.add(changed)
        unsubscribe = None
        if station is not None:
            unsubscribe = station.subscribe(lambda: _set_threadsafe(loop, changed))
        try:
            while True:
                changed.clear()
                for d, m in list(self.frames):
                    if pred(d, m):
                        return m
                left = end - loop.time()
                if left <= 0 or (station is not None and station.proc.poll() is not None):
                    break
                try:
                    await asyncio.wait_for(changed.wait(), left)
                except asyncio.TimeoutError:
                    pass
        finally:
            self._waiters.discard(changed)
            if unsubscribe is not None:
                unsubscribe()
        raise AssertionError("no %s within %ss; frames:\n%s%s" % (
            what, timeout, "\n".join("%s %s" % (d, json.dumps(m)) for d, m in self.frames[-40:]),
            ("\nconsole:\n" + station.tail()) if station is not None else ""))

    async def wait_call(self, action, n=1, timeout=20, station=None, pred=None):
        """The n-th CALL of `action` from the station (waiting for it)."""
        def ok(d, m):
            if not (d == "cp" and m[0] == 2 and m[2] == action and (pred is None or pred(m))):
                return False
            return sum(1 for d2, m2 in self.frames[:self.frames.index((d, m)) + 1]
                       if d2 == "cp" and m2[0] == 2 and m2[2] == action
                       and (pred is None or pred(m2))) >= n
        return await self.wait_for(ok, timeout, "%s #%d" % (action, n), station)


MEASURANDS = ["Energy.Active.Import.Register", "Current.Import", "Voltage", "Power.Active.Import",
              "Temperature"]
UNITS = {"Energy.Active.Import.Register": ("Wh", "Outlet"), "Current.Import": ("A", "Outlet"),
         "Voltage": ("V", "Outlet"), "Power.Active.Import": ("W", "Outlet"),
         "Temperature": ("Celsius", "Body")}


def ts(s):
    """Epoch seconds of an OCPP timestamp; fails unless it is UTC ISO 8601 with 'Z'."""
    assert s.endswith("Z") and s[10] == "T", s
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def no_ts(p):
    """A payload without its timestamp (checked separately), for exact comparison."""
    q = dict(p)
    stamp = q.pop("timestamp")
    assert abs(ts(stamp) - datetime.now(timezone.utc).timestamp()) < 60, stamp
    return q


def sampled(mv, context="Sample.Periodic", measurands=MEASURANDS):
    """{measurand: float value} of one MeterValue, checking unit, location, context, format."""
    out = {}
    for sv in mv["sampledValue"]:
        unit, loc = UNITS[sv["measurand"]]
        assert sv == {"value": sv["value"], "context": context, "format": "Raw",
                      "measurand": sv["measurand"], "location": loc, "unit": unit}, sv
        out[sv["measurand"]] = float(sv["value"])
    assert list(out) == measurands, mv
    return out


# the unix board's scenario for OCPP stations: a steady enclosure, 16 A at 230 V (the station
# fixture merges a test's own scenario over it)
OCPP_SCENARIO = {"seed": 3, "unique_id": "e6614103e7452d2f",
                 "dht": {"temp_c": 24.0, "humidity": 45.0, "drift": 0.0, "error_rate": 0.0},
                 "mains": {"hz": 50, "vrms": 230.0, "irms": 16.0, "noise": 0.002, "offset": 32768}}


def _set_threadsafe(loop, event):
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:   # the loop is closed: nobody waits any more
        pass


def station_config(url, **ocpp_kw):
    o = {"url": url, "heartbeat_s": 30, "meter_interval_s": 1, "call_timeout_s": 5,
         "reconnect_max_s": 2, "connection_timeout_s": 5, "id_tag": "LOCAL-TAG",
         # off unless a test turns it on: the default (900 s) would add MeterValues at each
         # quarter hour to the exact frame sequences the tests assert
         "clock_aligned_s": 0}
    o.update(ocpp_kw)
    return {"station_id": "CP-1", "wifi": {"ssid": "shed", "password": "wifi-secret-9"},
            "web": {"enabled": False}, "sensors": {"interval_s": 1}, "ocpp": o}


async def _serve_forever(port, remote_start_after):
    """A standalone central system (for benchmarks and demos): accepts every station and,
    `remote_start_after` seconds after each boot, starts a transaction remotely."""
    from ocpp.v16 import call

    cs = await CentralSystem(port=port, heartbeat=5).start()
    print("central system at %s" % cs.url, flush=True)
    started = set()
    while True:
        await asyncio.sleep(0.5)
        cp = cs.cp
        if cp is not None and id(cp) not in started and cs.calls("StatusNotification"):
            started.add(id(cp))
            await asyncio.sleep(remote_start_after)
            try:
                r = await cs.call(call.RemoteStartTransaction(id_tag="BENCH"))
                print("RemoteStartTransaction: %s" % r.status, flush=True)
            except Exception as e:  # the station went away: wait for the next one
                print("RemoteStartTransaction failed: %r" % e, flush=True)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="an ocpp-package central system on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--remote-start-after", type=float, default=1.0)
    a = ap.parse_args()
    asyncio.run(_serve_forever(a.port or free_port(), a.remote_start_after))
