"""A TCP relay between a station and its central system that a test can cut: the station
offline while the central system stays up (the board's Wi-Fi drops are timed from its boot,
and a test waits for events, not for times). 127.0.0.1 on a free port, the same port again
after a cut."""
import asyncio


class TcpCut:
    def __init__(self, target_port):
        self.target = target_port
        self.port = 0
        self._server = None
        self._writers = set()
        self._trip = None           # (needle, count, future) of cut_after

    def cut_after(self, needle, count):
        """Cut once the central system has sent `needle` (bytes) `count` times more (that message
        still goes through); the returned future is done when it is cut."""
        fut = asyncio.get_running_loop().create_future()
        self._trip = [needle, count, fut]
        return fut

    async def start(self):
        """Listen (again, on the same port after a cut) and relay every connection."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self):
        """Stop listening and close every relayed connection, both sides."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for w in list(self._writers):
            w.close()
        self._writers.clear()
        await server.wait_closed()

    async def _relay(self, reader, writer):
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_w))

        async def pipe(r, w, down):
            tail = b""
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        break
                    w.write(data)
                    await w.drain()
                    trip = self._trip
                    if down and trip is not None:
                        seen = tail + data
                        trip[1] -= seen.count(trip[0])
                        tail = seen[-(len(trip[0]) - 1):] if len(trip[0]) > 1 else b""
                        if trip[1] <= 0:
                            self._trip = None
                            await self.cut()
                            trip[2].set_result(None)
                            break
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()
                self._writers.discard(w)

        await asyncio.gather(pipe(reader, up_w, False), pipe(up_r, writer, True))
