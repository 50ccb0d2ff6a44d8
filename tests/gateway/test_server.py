"""The gateway's listening port (gateway/server.py): every read, HTTP and OCPP, goes through
the Front's one shared receive buffer (asyncio's BufferedProtocol), not a fresh 256 KiB
buffer per read, which fragmented glibc's heap with 10,000 paced stations."""
import asyncio
import json

import websockets
from websockets.frames import Frame, Opcode

from gwhttp import http
from picocharge.gateway import server


async def _raw(port, sid="CP-1"):
    return await websockets.connect("ws://127.0.0.1:%d/ocpp/%s" % (port, sid), subprotocols=["ocpp1.6"],
                                    open_timeout=10)


async def test_server__http_and_ocpp_reads_go_through_the_shared_buffer(gateway, monkeypatch):
    reads = []
    real = server.RecvBuffer.buffer_updated

    def spy(self, nbytes):
        reads.append((type(self).__name__, nbytes, self.recv_buf))
        return real(self, nbytes)

    monkeypatch.setattr(server.RecvBuffer, "buffer_updated", spy)
    gw = await gateway(auth="none")
    status, _body = await http(gw, "GET", "/metrics")
    assert status == 200, _body
    ws = await _raw(gw.port)
    try:
        frame = '[2, "hb", "Heartbeat", {}]'
        await ws.send(frame)
        got = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert got[:2] == [3, "hb"] and list(got[2]) == ["currentTime"], got
    finally:
        await ws.close()
    kinds = {k for k, _n, _b in reads}
    assert kinds == {"Sniffer", "OcppConnection"}, reads
    # the WebSocket frame (6-byte header with the mask, then the payload) came through it
    assert sum(n for k, n, _b in reads if k == "OcppConnection") >= len(frame) + 6, reads
    assert all(b is gw.front.recv_buf for _k, _n, b in reads), "one buffer per Front, shared"
    assert len(gw.front.recv_buf) == server.RECV_SIZE


async def test_server__a_frame_split_across_reads_survives_other_connections_reading_in_between(gateway):
    gw = await gateway(auth="none")
    a, b = await _raw(gw.port, "CP-A"), await _raw(gw.port, "CP-B")
    try:
        payload = '[2, "split", "DataTransfer", {"vendorId": "Other", "data": "%s"}]' % ("x" * 3000)
        raw = Frame(Opcode.TEXT, payload.encode()).serialize(mask=True)
        a.transport.write(raw[:1500])
        await asyncio.sleep(0.2)
        # B's frame is read into the same buffer while A's frame is half there
        await b.send('[2, "b", "DataTransfer", {"vendorId": "Other", "data": "%s"}]' % ("y" * 1600))
        got_b = json.loads(await asyncio.wait_for(b.recv(), 5))
        assert got_b == [3, "b", {"status": "UnknownVendorId"}], got_b
        a.transport.write(raw[1500:])
        got_a = json.loads(await asyncio.wait_for(a.recv(), 5))
        assert got_a == [3, "split", {"status": "UnknownVendorId"}], got_a
    finally:
        await a.close()
        await b.close()
