"""A central system (or whatever answers at ocpp.url) that sends a 4 MiB status line: the
handshake finds the line too long at its 1,025th byte, a clean link error, no MemoryError."""
import asyncio

from support.central import station_config
from support.net import free_port


async def test_ws__4_mib_status_line_is_a_clean_link_error(station):
    port = free_port()

    async def answer(r, w):
        try:
            while (await r.readline()) not in (b"\r\n", b""):
                pass
            w.write(b"HTTP/1.1 101 ")
            chunk = b"A" * 65536
            for _ in range(64):  # 4 MiB, no end of line
                w.write(chunk)
                await w.drain()
        except OSError:
            pass
        finally:
            w.close()

    srv = await asyncio.start_server(answer, "127.0.0.1", port)
    try:
        st = station(station_config("ws://127.0.0.1:%d/ocpp" % port)).start()
        line = await st.aexpect("[ocpp] W: link down", timeout=30)
        assert "handshake line longer than 1024 bytes: not a WebSocket server (check ocpp.url)" in line, line
        await st.aexpect("[meter] I:")  # still sampling
        await st.aexpect("[ocpp] I: connecting to", timeout=10)  # and retrying
        out = "\n".join(st.lines)
        assert "MemoryError" not in out and "Traceback" not in out, st.tail()
    finally:
        srv.close()
        await srv.wait_closed()
