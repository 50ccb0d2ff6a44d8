"""Load balancing in a cluster (issue 13): two real `picocharge gateway` processes on one
PostgreSQL database; one of them holds the lease "loadbalance" and plans the group, whose stations
(ocpp-package charge points) are connected one to each process. The one on the other process
receives its TxDefaultProfile and TxProfiles all the same (forwarded calls), and its transaction,
which only that process saw start, is in the plan."""
import asyncio

from ocpp.v16 import call

from support.gwcluster import port_of, start_gateway, until
from support.gwhttp import http
from support.smartstation import SmartStation
from support.stations import Connected, boot


async def test_loadbalance_cluster__one_process_plans_for_stations_on_both(pg_url):
    a = await asyncio.to_thread(start_gateway, pg_url, "--thingspeak-url", "", "--auth", "none")
    b = None
    try:
        b = await asyncio.to_thread(start_gateway, pg_url, "--thingspeak-url", "", "--auth", "none")
        pa, pb = port_of(a), port_of(b)

        async def planners():
            la = (await http(pa, "GET", "/healthz"))[1]["cluster"]["leases"]
            lb = (await http(pb, "GET", "/healthz"))[1]["cluster"]["leases"]
            n = ("loadbalance" in la) + ("loadbalance" in lb)
            return (la, lb) if n == 1 and len(la) + len(lb) == 18 and lb else None
        got = await until(planners, 60)
        assert got, "the leases did not settle between the two processes"
        here, there = (pa, pb) if "loadbalance" in got[0] else (pb, pa)
        async with Connected(here, "CP-1", cls=SmartStation) as c1, Connected(there, "CP-2", cls=SmartStation) as c2:
            assert (await boot(c1)).status == "Accepted" and (await boot(c2)).status == "Accepted"
            s, out = await http(there, "POST", "/api/load-groups", {
                "name": "site", "limit_a": 32, "phases": 3, "members": [{"station": "CP-1"}, {"station": "CP-2"}]})
            assert s == 201 and out["planner"] == "elsewhere", out
            # the planner (the other process) read the group (NOTIFY or its poll) and told both stations
            await until(_async(lambda: c1.limit_now(1, None) == 16.0 and c2.limit_now(1, None) == 16.0), 60)
            assert (c1.limit_now(1, None), c2.limit_now(1, None)) == (16.0, 16.0), (c1.set_calls, c2.set_calls)
            t2 = (await c2.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0,
                                                      timestamp="2026-06-01T10:00:00Z"))).transaction_id
            await until(_async(lambda: c2.limit_now(1, t2) == 32.0), 60)
            assert c2.limit_now(1, t2) == 32.0, c2.set_calls
            t1 = (await c1.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0,
                                                      timestamp="2026-06-01T10:00:00Z"))).transaction_id
            await until(_async(lambda: c1.limit_now(1, t1) == 16.0 and c2.limit_now(1, t2) == 16.0), 60)
            assert (c1.limit_now(1, t1), c2.limit_now(1, t2)) == (16.0, 16.0), (c1.set_calls, c2.set_calls)
            s, out = await http(here, "GET", "/api/load-groups/site")
            assert out["planner"] == "here" and out["held_a"] == 32.0, out
    finally:
        for g in (b, a):
            if g is not None:
                await asyncio.to_thread(g.stop)


def _async(fn):
    async def check():
        return fn()
    return check
