"""Small helpers shared by the HTTP routes (web.py, api.py): JSON answers, bodies read with a
time limit."""
import asyncio
import json

from aiohttp import web

NO_STORE = {"Cache-Control": "no-store"}


def json_response(obj, status=200, headers=None):
    return web.Response(status=status, text=json.dumps(obj, separators=(",", ":"), allow_nan=False),
                        content_type="application/json", headers=dict(NO_STORE, **(headers or {})))


def error(status, message, headers=None):
    return json_response({"error": message}, status, headers)


def slow_body(timeout):
    r = error(408, "the body did not arrive within %g s (--body-timeout)" % timeout)
    r.force_close()
    return r


async def read_body(request, timeout):
    """The request body, which must arrive within `timeout` seconds (asyncio.TimeoutError)."""
    if not request.body_exists:
        return b""
    async with asyncio.timeout(timeout):
        return await request.read()
