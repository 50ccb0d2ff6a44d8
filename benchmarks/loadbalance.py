"""How long the load balancer takes to re-plan (issue 13): 1,000 charge points built on the ocpp
package (tests/support/smartstation.py, over real WebSockets on 127.0.0.1) on one in-process
gateway (SQLite), in 20 load groups of 50, each station charging.

Printed (wall times from the event to every station of the group(s) having answered its
SetChargingProfile, i.e. gw.loadbalance.settled()):
  - the pure allocation of one group (loadbalance.allocate, 50 cars): CPU per call;
  - one StartTransaction in a group of 50 charging cars: the re-plan sends 50 TxProfiles;
  - one StopTransaction in that group;
  - the limit of all 20 groups changed at once: 1,000 TxProfiles;
  - the planner's own time per plan (gw.loadbalance.plan_s: the plan and its calls' round trips).

    python benchmarks/loadbalance.py [--stations 1000] [--groups 20] [--rounds 5]

Stations and gateway share one process and one core here: the figures include the stations'
own work (the ocpp package's schema checks on each SetChargingProfile).
"""
import argparse
import asyncio
import itertools
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import websockets  # noqa: E402
from ocpp.v16 import call  # noqa: E402

from picocharge.gateway.app import Gateway, Settings  # noqa: E402
from picocharge.gateway.loadbalance import GroupBody, allocate  # noqa: E402
from support.smartstation import SmartStation  # noqa: E402


async def connect(port, sid):
    ws = await websockets.connect("ws://127.0.0.1:%d/ocpp/%s" % (port, sid), subprotocols=["ocpp1.6"],
                                  open_timeout=60, ping_interval=None)
    cp = SmartStation(sid, ws)
    cp._task = asyncio.get_running_loop().create_task(cp.start())
    await cp.call(call.BootNotification(charge_point_vendor="PicoCharge", charge_point_model="bench"))
    return cp


_starts = itertools.count(1)


async def start(cp):
    n = next(_starts)   # fields of their own: the same again would be answered as a replay
    r = await cp.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=n,
                                            timestamp="2026-06-01T10:%02d:%02dZ" % (n // 60 % 60, n % 60)))
    cp.tid = r.transaction_id


async def stop(cp):
    await cp.call(call.StopTransaction(meter_stop=1, timestamp="2026-06-01T11:00:00Z", transaction_id=cp.tid))


def ms(xs):
    return "median %.1f ms, max %.1f ms (%d rounds)" % (statistics.median(xs) * 1000, max(xs) * 1000, len(xs))


async def main(a):
    logging.basicConfig(level=logging.WARNING)
    per = a.stations // a.groups
    cars = [("k%d" % i, 0, i, False) for i in range(per)]
    n = 20000
    t0 = time.process_time()
    for _ in range(n):
        allocate(per * 8.0, cars)
    print("allocate(), %d cars: %.1f us CPU per call" % (per, (time.process_time() - t0) / n * 1e6))

    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(Settings(db=tmp + "/gw.db", port=0, auth="none", api_auth="none", thingspeak_url=None,
                              max_connections=a.stations * 2 + 100))
        await gw.start()
        cps = []
        try:
            t = time.monotonic()
            for i in range(0, a.stations, 100):
                cps += await asyncio.gather(*(connect(gw.port, "CP-%04d" % j) for j in range(i, min(i + 100,
                                                                                                     a.stations))))
            print("%d stations connected and booted in %.1f s" % (len(cps), time.monotonic() - t))
            groups = [cps[g * per:(g + 1) * per] for g in range(a.groups)]
            t = time.monotonic()
            for g, members in enumerate(groups):
                await gw.loadbalance.put(GroupBody(name="g%02d" % g, limit_a=per * 8.0, phases=3,
                                                   members=[{"station": cp.id} for cp in members]))
            await gw.loadbalance.settled()
            print("%d groups made, every member's TxDefaultProfile answered: %.2f s" % (a.groups,
                                                                                    time.monotonic() - t))
            t = time.monotonic()
            await asyncio.gather(*(start(cp) for cp in cps))
            await gw.loadbalance.settled()
            print("%d transactions started at once, every TxProfile answered: %.2f s" % (len(cps),
                                                                                      time.monotonic() - t))
            gw.loadbalance.plan_s.clear()
            one_start, one_stop, all_limits = [], [], []
            cp = groups[0][-1]
            for r in range(a.rounds):
                t = time.monotonic()
                await stop(cp)
                await gw.loadbalance.settled()
                one_stop.append(time.monotonic() - t)
                t = time.monotonic()
                await start(cp)
                await gw.loadbalance.settled()
                one_start.append(time.monotonic() - t)
            plans = list(gw.loadbalance.plan_s)
            for r in range(a.rounds):
                limit = per * (7.0 if r % 2 == 0 else 8.0)
                t = time.monotonic()
                for g in range(a.groups):
                    await gw.loadbalance.put(GroupBody(**dict(gw.loadbalance.groups["g%02d" % g].cfg,
                                                              limit_a=limit)))
                await gw.loadbalance.settled()
                all_limits.append(time.monotonic() - t)
            sent = sum(len(cp.set_calls) for cp in cps)
            total = sum(cp.limit_now(1, cp.tid) for cp in groups[0])
            print("one StartTransaction in a group of %d charging cars, re-planned and every station told: %s"
                  % (per, ms(one_start)))
            print("one StopTransaction in that group: %s" % ms(one_stop))
            print("the limit of all %d groups changed at once (%d TxProfiles and TxDefaultProfiles): %s"
                  % (a.groups, a.stations * 2, ms(all_limits)))
            print("one plan of a group of %d (its calls' round trips included): %s" % (per, ms(plans)))
            print("SetChargingProfile calls received in all: %d; group g00 holds %.1f A of its %.1f A"
                  % (sent, total, gw.loadbalance.groups["g00"].limit_a))
        finally:
            for cp in cps:
                cp._task.cancel()
                await cp._connection.close()
            await gw.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stations", type=int, default=1000)
    p.add_argument("--groups", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(p.parse_args()))
