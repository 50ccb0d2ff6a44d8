"""HTTP helpers for the gateway tests: requests to an in-process gateway, Basic credentials."""
import asyncio
import base64
import json
import urllib.error
import urllib.request


TEST_TOKEN = "test-admin-token-0"   # the conftest gateways' --api-token (admin)


def auth_headers(gw_or_port, headers=None):
    """`headers` with the gateway's admin token added unless they carry credentials of their own
    (Authorization, or a session Cookie); given a port, the gateway is a process started by these
    tests, whose token is TEST_TOKEN."""
    h = dict(headers or {})
    if isinstance(gw_or_port, int):
        token = TEST_TOKEN
    else:
        token = getattr(getattr(gw_or_port, "settings", None), "api_token", None)
    if token and not {"authorization", "cookie"} & {k.lower() for k in h}:
        h["Authorization"] = "Bearer " + token
    return h


async def http(gw_or_port, method, path, body=None, headers=None, raw=None):
    """(status, parsed JSON or text) of an HTTP request to the gateway, from a worker thread. It
    carries the gateway's API token (the API needs one for everything) unless `headers` bring
    credentials of their own."""
    port = gw_or_port if isinstance(gw_or_port, int) else gw_or_port.port
    headers = auth_headers(gw_or_port, headers)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method,
                                 headers=dict({"Content-Type": "application/json"}, **(headers or {})))

    def go():
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "")

    status, out, ctype = await asyncio.get_running_loop().run_in_executor(None, go)
    if "json" in ctype:
        return status, json.loads(out)
    return status, out.decode()


def basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()}
