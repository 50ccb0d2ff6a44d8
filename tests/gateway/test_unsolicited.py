"""Bounded per-station queues (issue 10): CALLRESULTs/CALLERRORs that answer no pending call of the
gateway are dropped and counted, never kept (1,500 x 60 KB of them held +87 MB before)."""
import asyncio
import json

import psutil
import pytest
import websockets

from support.gwhttp import http
from picocharge.gateway.logonce import reset_all


@pytest.fixture(autouse=True)
def _fresh_log_once():
    reset_all()     # what an earlier test logged does not hold back this test's lines


async def test_session__unsolicited_answers_are_dropped_and_counted_and_memory_stays_flat(gateway, caplog):
    gw = await gateway()
    proc = psutil.Process()
    async with websockets.connect("ws://127.0.0.1:%d/ocpp/CP-1" % gw.port, subprotocols=["ocpp1.6"],
                                  max_size=2 ** 20) as ws:
        await ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
        assert json.loads(await ws.recv())[0] == 3
        sess = gw.sessions["CP-1"]
        rss0 = proc.memory_info().rss
        blob = "x" * 60000
        for i in range(1500):
            kind = [3, "u%d" % i, {"data": blob}] if i % 2 else [4, "u%d" % i, "InternalError", blob, {}]
            await ws.send(json.dumps(kind))
        await ws.send(json.dumps([2, "hb", "Heartbeat", {}]))
        got = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert got[:2] == [3, "hb"], got
        grown = proc.memory_info().rss - rss0
        assert sess.dropped_answers == 1500 and gw.metrics.dropped_answers == 1500, sess.dropped_answers
        assert sess._response_queue.qsize() == 0, sess._response_queue.qsize()
        assert grown < 30 * 2 ** 20, grown / 2 ** 20

        # the gateway's own calls still get their answers
        cmd = asyncio.ensure_future(http(gw, "POST", "/api/stations/CP-1/reset", {"type": "Soft"}))
        call = json.loads(await asyncio.wait_for(ws.recv(), 20))
        assert call[0] == 2 and call[2] == "Reset", call
        await ws.send(json.dumps([3, "not-" + call[1], {"status": "Rejected"}]))   # not its answer
        await ws.send(json.dumps([3, call[1], {"status": "Accepted"}]))
        s, out = await cmd
        assert (s, out) == (200, {"status": "Accepted"}), (s, out)
        assert sess.dropped_answers == 1501
    dropped = [r for r in caplog.records
               if "unknown unique id" in r.getMessage() or "no pending call" in r.getMessage()]
    assert len(dropped) <= 3, [r.getMessage() for r in dropped]
