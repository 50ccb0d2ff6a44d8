"""The station's free heap read from its status page, as the heap tests watch it."""
import asyncio
import json
import urllib.request


async def watch_heap(st, web, seconds, each=None):
    """The station's free heap as its status page reports it, read once per sample for
    `seconds` (a read that fails is left out: the caller counts them); `each(free)` after
    every read."""
    free = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await st.aexpect("[meter] I:")
        try:
            s = await loop.run_in_executor(None, lambda: json.loads(urllib.request.urlopen(
                "http://127.0.0.1:%d/api/status" % web, timeout=3).read()))
            free.append(s["mem_free"])
        except OSError:
            pass
        assert st.proc.poll() is None, st.tail()
        if each:
            await each(free)
    return free
