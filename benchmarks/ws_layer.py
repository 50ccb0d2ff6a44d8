"""What the WebSocket layer alone costs per OCPP message, on this machine: a server that reads
each CALL with orjson and answers a CALLRESULT, nothing else (no schema, no store, no MQTT), on
aiohttp (what the gateway runs) and on picows (a Cython WebSocket library), driven in closed loop
by N picows clients in another process. Prints the server process's CPU per message (user +
system, so the kernel's TCP work is in it).

Closed loop (the default): each client sends its next frame when the answer to the last one
comes. Paced (`--paced S`): each client sends one frame every S seconds, the clients' first
frames spread over the first S seconds, as `picocharge bench` paces its stations: about one
frame a turn of the server's loop, the shape of issue 17's paced aim (10,000 stations, one
message each every 10 s).

    pip install picows          # not a dependency of the project: only this measurement uses it
    python benchmarks/ws_layer.py [--connections 500] [--seconds 10] [--rounds 2] [--modes aiohttp,picows]
    python benchmarks/ws_layer.py --connections 10000 --paced 10 --seconds 30

Issue 17 (docs/performance.md, "What is left, and why"): how much of the gateway's 118 us per
message in closed loop is the WebSocket layer, and what a faster one could take off.
"""
import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time

FRAME = (b'[2,"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","MeterValues",{"connectorId":1,"transactionId":7,'
         b'"meterValue":[{"timestamp":"2026-12-01T10:00:00Z","sampledValue":[{"value":"1234","measurand":'
         b'"Energy.Active.Import.Register","unit":"Wh"},{"value":"16.2","measurand":"Current.Import","unit":"A"},'
         b'{"value":"230.1","measurand":"Voltage","unit":"V"}]}]}]')


def serve(mode, port):
    import orjson
    import uvloop

    def answer(data):
        return orjson.dumps([3, orjson.loads(data)[1], {}])

    async def main():
        if mode.startswith("aiohttp"):
            from aiohttp import WSMsgType, web
            # aiohttp-heartbeat: its ping timer on, as the gateway had it until Liveness (ocpp_ws.py)
            heartbeat = 60.0 if mode == "aiohttp-heartbeat" else None

            async def handler(request):
                ws = web.WebSocketResponse(protocols=("ocpp1.6",), heartbeat=heartbeat)
                await ws.prepare(request)
                async for m in ws:
                    if m.type == WSMsgType.TEXT:
                        await ws.send_str(answer(m.data).decode())
                return ws

            app = web.Application()
            app.router.add_get("/ocpp/{sid}", handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        else:
            import picows

            class Listener(picows.WSListener):
                def on_ws_frame(self, transport, frame):
                    if frame.msg_type == picows.WSMsgType.TEXT:
                        transport.send(picows.WSMsgType.TEXT, answer(frame.get_payload_as_bytes()))

            def factory(_request):
                return picows.WSUpgradeResponseWithListener(picows.WSUpgradeResponse.create_101_response(
                    extra_headers={"Sec-WebSocket-Protocol": "ocpp1.6"}), Listener())

            await picows.ws_create_server(factory, "127.0.0.1", port)
        print("ready", flush=True)
        await asyncio.sleep(3600)

    uvloop.run(main())


def _cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def drive(mode, connections, seconds, paced=None):
    import picows
    import uvloop

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--port", str(port)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready"
        count = [0]

        class Client(picows.WSListener):
            def on_ws_connected(self, transport):
                if paced:
                    self.t = transport
                    asyncio.get_running_loop().call_later(paced * random.random(), self.tick)
                else:
                    transport.send(picows.WSMsgType.TEXT, FRAME)

            def tick(self):
                self.t.send(picows.WSMsgType.TEXT, FRAME)
                asyncio.get_running_loop().call_later(paced, self.tick)

            def on_ws_frame(self, transport, frame):
                count[0] += 1
                if not paced:
                    transport.send(picows.WSMsgType.TEXT, FRAME)

        async def main():
            for i in range(connections):
                await picows.ws_connect(Client, "ws://127.0.0.1:%d/ocpp/CP-%d" % (port, i))
            await asyncio.sleep(2 + (paced or 0))
            c0, n0, t0 = _cpu(srv.pid), count[0], time.time()
            await asyncio.sleep(seconds)
            c1, n1, t1 = _cpu(srv.pid), count[0], time.time()
            return (n1 - n0) / (t1 - t0), (c1 - c0) / (t1 - t0), (c1 - c0) / max(n1 - n0, 1) * 1e6

        return uvloop.run(main())
    finally:
        srv.kill()
        srv.wait()


MODES = ("aiohttp", "aiohttp-heartbeat", "picows")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--paced", type=float, metavar="S",
                    help="each connection sends a frame every S seconds (default: closed loop)")
    ap.add_argument("--modes", default="aiohttp,aiohttp-heartbeat,picows",
                    help="servers to measure, in turn: aiohttp, aiohttp-heartbeat, picows")
    ap.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        return serve(a.serve, a.port)
    modes = a.modes.split(",")
    bad = [m for m in modes if m not in MODES]
    if bad:
        sys.exit("--modes: %s unknown (choose from %s)" % (", ".join(bad), ", ".join(MODES)))
    try:
        import picows  # noqa: F401
    except ImportError:
        sys.exit("this measurement drives the servers with picows clients: pip install picows")
    for r in range(a.rounds):
        for mode in modes:
            rate, cpu, us = drive(mode, a.connections, a.seconds, a.paced)
            print("round %d  %-17s %8.0f msgs/s  server %4.0f %% of a core  %5.1f us/msg"
                  % (r + 1, mode, rate, cpu * 100, us), flush=True)


if __name__ == "__main__":
    main()
