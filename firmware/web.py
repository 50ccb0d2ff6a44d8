# The board's own status page (microdot): "/" HTML, "/api/status" JSON. Never a secret.
import gc

import json

import log

_L = log.get("web")

_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>PicoCharge %s</title>
<style>body{font-family:system-ui,sans-serif;margin:1rem;max-width:32rem;color:#123}
h1{font-size:1.3rem}table{border-collapse:collapse;width:100%%}td{padding:.35rem;border-bottom:1px solid #dde}
td:last-child{text-align:right;font-variant-numeric:tabular-nums}.s{font-weight:bold}</style></head>
<body><h1>PicoCharge <span id="sid">%s</span></h1><p class="s" id="status">%s</p><table id="t"></table>
<script>
var L=[["temp_c","Enclosure","\u00b0C"],["humidity","Humidity","%%"],["current_a","Current","A"],
["voltage_v","Voltage","V"],["power_w","Power","W"],["energy_wh","Energy","Wh"],["chip_temp_c","Board","\u00b0C"]];
function u(){fetch("/api/status").then(r=>r.json()).then(d=>{var h="";
L.forEach(l=>{var v=d.readings[l[0]];h+="<tr><td>"+l[1]+"</td><td>"+(v==null?"-":v)+" "+l[2]+"</td></tr>"});
for(var k in d.links)h+="<tr><td>"+k+"</td><td>"+d.links[k]+"</td></tr>";
h+="<tr><td>uptime</td><td>"+d.uptime_s+" s</td></tr><tr><td>free memory</td><td>"+d.mem_free+" B</td></tr>";
document.getElementById("t").innerHTML=h;
document.getElementById("status").textContent=d.status+(d.fault?" ("+(d.fault_info||d.fault)+")":"")+(d.relay?", relay closed":"")})}
u();setInterval(u,2000)</script></body></html>"""


def status(ctx):
    st = ctx.state
    r = st.reading()
    del r["status"]
    del r["fault"]
    return {
        "station_id": ctx.cfg["station_id"], "firmware": ctx.fw_version, "board": ctx.board.name,
        "status": st.status, "fault": st.fault, "fault_info": st.fault_info, "relay": st.relay,
        "readings": r,
        "links": st.links, "counters": st.counters, "uptime_s": st.uptime_s(),
        "mem_free": gc.mem_free(), "mem_alloc": gc.mem_alloc(), "dht_errors": st.dht_errors,
    }


def _json_pieces(d):
    """A flat dict as JSON, one small string per key (the largest is `readings`, ~150 bytes)."""
    sep = "{"
    for k in d:
        yield sep + json.dumps(k) + ":" + json.dumps(d[k])
        sep = ","
    yield "}"


def make_app(ctx):
    from microdot import Microdot, Response

    app = Microdot()

    @app.route("/")
    async def index(req):
        sid = ctx.cfg["station_id"]
        return Response(_PAGE % (sid, sid, ctx.state.status), headers={"Content-Type": "text/html"})

    @app.route("/api/status")
    async def api_status(req):
        gc.collect()  # report the live heap, not garbage waiting for collection
        # sent a key at a time (HTTP/1.0: the end of the body is the end of the connection):
        # json.dumps of the whole status grows one string to ~500 bytes, and in a long run
        # at 192K that one block was what a fragmented heap could not give
        return Response(_json_pieces(status(ctx)), headers={"Content-Type": "application/json"})

    return app


async def run(ctx):
    """Serve the page. The socket is bound here rather than in microdot's start_server, so
    the port is announced once it is really listening, and a port in use is said plainly
    and retried with backoff instead of crashing the task every 5 s."""
    import asyncio
    from errno import EADDRINUSE
    from reconnect import Backoff

    app = make_app(ctx)
    port = ctx.cfg["web"]["port"]
    back = Backoff(5, 300)
    while True:
        await ctx.wifi_up.wait()
        try:
            srv = await asyncio.start_server(app.handle_request, "0.0.0.0", port)
        except OSError as e:
            if e.errno != EADDRINUSE:
                raise
            wait = back.next()
            _L.warn("port %d in use (another server on it?); trying again in %.1fs", port, wait)
            await asyncio.sleep(wait)
            continue
        app.server = srv  # what microdot's shutdown() closes
        _L.info("status page on port %d", port)
        await srv.wait_closed()
