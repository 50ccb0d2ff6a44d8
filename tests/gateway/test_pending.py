"""The count of stations waiting for an operator (--auth pending, --max-pending), kept by a set
(gateway/pending.py) and not by a walk over every station per unknown station's connection: the
same count as that walk whatever is admitted, accepted, rejected or removed; and through the real
port, an unknown station's connection no longer walks the fleet."""
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st

from support.gwhttp import basic, http
from picocharge.gateway.pending import PendingStations
from picocharge.gateway.store import Store


class _Gw:
    def __init__(self):
        self.stations = {}


STATES = st.sampled_from(("accepted", "pending", "rejected"))
ops = st.lists(st.tuples(st.sampled_from(("add", "set", "set_quietly", "remove", "count")), st.integers(0, 5),
                         STATES), max_size=60)


@settings(max_examples=400, deadline=None)
@given(ops)
def test_pending__the_set_counts_what_the_walk_over_every_station_counted(steps):
    gw = _Gw()
    p = PendingStations(gw)
    for op, n, state in steps:
        sid = "CP-%d" % n
        if op == "add" and sid not in gw.stations:          # Gateway.register, _station_row_read
            gw.stations[sid] = {"id": sid, "state": state}
            p.note(sid)
        elif op == "set" and sid in gw.stations:            # Gateway.set_state, _station_row_read
            gw.stations[sid]["state"] = state
            p.note(sid)
        elif op == "set_quietly" and sid in gw.stations and state != "pending":
            gw.stations[sid]["state"] = state               # a state left without a note: not counted
        elif op == "remove" and sid in gw.stations:         # Gateway.remove
            gw.stations[sid]["state"] = "rejected"
            del gw.stations[sid]
            p.note(sid)
        elif op == "count":
            assert p.count() == sum(1 for row in gw.stations.values() if row["state"] == "pending"), gw.stations
    assert p.count() == sum(1 for row in gw.stations.values() if row["state"] == "pending"), gw.stations


class _Walks(dict):
    """gw.stations, counting the walks over all of it."""
    walks = 0

    def values(self):
        type(self).walks += 1
        return super().values()

    def items(self):
        type(self).walks += 1
        return super().items()


async def test_pending__an_unknown_stations_connection_does_not_walk_the_fleet(gateway, gw_db):
    """1,000 accepted stations: each unknown station's connection under --auth pending walked all
    of them to count the pending ones (before the fix: one walk per connection); now the first
    count builds the set, the others walk nothing. The cap holds as before."""
    db = Store(gw_db).open()
    try:
        db.execute("BEGIN")
        db.executemany("INSERT INTO stations (id, state, created_at) VALUES (?,?,?)",
                       [("CP-%04d" % i, "accepted", "2026-01-01T00:00:00Z") for i in range(1000)])
        db.execute("COMMIT")
    finally:
        db.close()
    gw = await gateway(auth="pending", max_pending=3)
    gw.stations = _Walks(gw.stations)
    url = "ws://127.0.0.1:%d/ocpp/" % gw.port
    for sid in ("NEW-1", "NEW-2", "NEW-3"):
        async with websockets.connect(url + sid, subprotocols=["ocpp1.6"],
                                      additional_headers=basic(sid, "pending-pass-1")):
            pass
    assert _Walks.walks <= 1, _Walks.walks
    try:
        await websockets.connect(url + "NEW-4", subprotocols=["ocpp1.6"],
                                 additional_headers=basic("NEW-4", "pending-pass-1"))
        raise AssertionError("a fourth pending station was let in past --max-pending 3")
    except websockets.InvalidStatus as e:
        assert e.response.status_code == 503, e.response
    # accepted by the operator: it waits no more, and a place is free again
    s, out = await http(gw, "POST", "/api/stations/NEW-2/accept")
    assert s == 200 and out["state"] == "accepted", out
    async with websockets.connect(url + "NEW-4", subprotocols=["ocpp1.6"],
                                  additional_headers=basic("NEW-4", "pending-pass-1")):
        pass
    assert sorted(sid for sid, row in dict.items(gw.stations) if row["state"] == "pending") == ["NEW-1", "NEW-3",
                                                                                              "NEW-4"]
    assert _Walks.walks <= 1, _Walks.walks
