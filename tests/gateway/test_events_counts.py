"""The event hub's counts (gateway/events.py): kept up to date from the stations each pass finds
changed, they must be what counting the whole fleet gives (events.counts, which GET /api/fleet
and the stream's hello use) after every whole pass. A model test: random changes to a gateway's
in-memory view of its stations, made between passes and between the slices of a pass (the
ticker lets the event loop run there), subscribers replaced in the middle of one, and the
counts sent compared after each whole pass; each station changed is sent, each removed one
is sent as removed."""
from hypothesis import HealthCheck, given, settings, strategies as st

from picocharge.firmware.fields import STATUSES
from picocharge.gateway import events

IDS = ["S%d" % i for i in range(8)]


class _Gw:
    def __init__(self):
        self.stations, self.connected, self.last, self.ota_last = {}, set(), {}, {}
        self.seq = 0

    def station_view(self, sid):
        return {"id": sid}


_OPS = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(IDS)),
    st.tuples(st.just("remove"), st.sampled_from(IDS)),
    st.tuples(st.just("status"), st.sampled_from(IDS), st.sampled_from(STATUSES + (None, "Bogus"))),
    st.tuples(st.just("error"), st.sampled_from(IDS), st.sampled_from([None, "", "NoError", "HighTemperature",
                                                                        "GroundFailure"])),
    st.tuples(st.just("state"), st.sampled_from(IDS), st.sampled_from(["accepted", "pending", "rejected"])),
    st.tuples(st.just("connect"), st.sampled_from(IDS), st.booleans()),
    st.tuples(st.just("reading"), st.sampled_from(IDS), st.sampled_from([None, 20.0, 49.9, 50.0, 70.0])),
    st.tuples(st.just("replace"), st.sampled_from(IDS)),    # the row read again: a new dict, same values
    st.tuples(st.just("tick")),         # a whole pass (after the one going on, if any)
    st.tuples(st.just("slice")),        # the next slice of the pass going on (or of a new one)
    st.tuples(st.just("resubscribe")),  # every subscriber leaves, a new one comes
)


def _apply(gw, op):
    kind, sid = op[0], op[1] if len(op) > 1 else None
    row = gw.stations.get(sid)
    if kind == "add" and row is None:
        gw.stations[sid] = {"state": "accepted", "status": None, "error_code": None, "last_seen": None}
    elif kind == "remove" and row is not None:
        del gw.stations[sid]
        gw.connected.discard(sid)
        gw.last.pop(sid, None)
    elif row is None:
        return
    elif kind in ("status", "error", "state"):
        row[{"status": "status", "error": "error_code", "state": "state"}[kind]] = op[2]
    elif kind == "connect":
        (gw.connected.add if op[2] else gw.connected.discard)(sid)
    elif kind == "reading":
        gw.seq += 1
        last = gw.last.setdefault(sid, {})
        if op[2] is not None:
            last["temp_c"] = op[2]
        last["seq"] = gw.seq
    elif kind == "replace":
        gw.stations[sid] = dict(row)


# the monkeypatch holds for every example alike (the same SLICE): nothing of it to reset between them
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(IDS), max_size=5), st.lists(_OPS, max_size=60))
def test_events_counts__kept_from_the_changes_they_equal_a_count_of_the_whole_fleet(monkeypatch, first, ops):
    monkeypatch.setattr(events, "SLICE", 3)     # 8 stations: passes of up to three slices
    gw = _Gw()
    for sid in first:
        _apply(gw, ("add", sid))
    hub = events.Hub(gw)
    sub = hub.subscribe(None)
    sent = events.counts(gw)
    shown = {sid: True for sid in gw.stations}  # what the subscriber was told exists
    going = None

    def read():
        nonlocal sent
        while sub.queue:
            ev = sub.queue.popleft()
            if "counts" in ev:
                sent = ev["counts"]
            assert not {v["id"] for v in ev["stations"]} & set(ev.get("removed", ())), ev
            for v in ev["stations"]:
                shown[v["id"]] = True
            for sid in ev.get("removed", ()):
                shown.pop(sid, None)
    for op in ops + [("tick",)]:
        if op[0] == "slice":
            going = going or hub._pass()
            if next(going, StopIteration) is StopIteration:
                going = None
        elif op[0] == "resubscribe":
            hub.unsubscribe(sub)
            sub = hub.subscribe(None)
            sent = events.counts(gw)       # what the stream's hello says
            shown = {sid: True for sid in gw.stations}
        elif op[0] == "tick":
            for _ in going or ():
                pass
            going = None
            hub.tick()
            read()
            assert sent == events.counts(gw), (ops, sent, events.counts(gw))
            assert set(shown) == set(gw.stations), (ops, shown)
        else:
            _apply(gw, op)
        read()


def _fleet_in_slices_of_3(monkeypatch):
    """Every station of IDS, a hub with one subscriber of them all, passes in slices of 3."""
    monkeypatch.setattr(events, "SLICE", 3)
    gw = _Gw()
    for sid in IDS:
        _apply(gw, ("add", sid))
    hub = events.Hub(gw)
    return gw, hub, hub.subscribe(None)


def test_events_pass__lets_the_loop_run_after_every_slice_of_stations(monkeypatch):
    gw, hub, sub = _fleet_in_slices_of_3(monkeypatch)
    for sid in IDS:
        _apply(gw, ("status", sid, "Charging"))
    steps = list(hub._pass())
    assert len(steps) == 2, steps      # 8 stations: slices of 3, 3 and 2
    ev = sub.queue.popleft()
    assert [v["id"] for v in ev["stations"]] == IDS and ev["counts"]["status"]["Charging"] == 8, ev


def test_events_pass__a_station_removed_while_a_pass_goes_on_is_sent_as_removed_only(monkeypatch):
    gw, hub, sub = _fleet_in_slices_of_3(monkeypatch)
    _apply(gw, ("status", "S0", "Faulted"))
    going = hub._pass()
    next(going)                         # S0..S2 looked at: S0 changed
    _apply(gw, ("remove", "S0"))
    assert list(going) == [None]
    ev = sub.queue.popleft()
    assert ev["removed"] == ["S0"] and ev["stations"] == [] and ev["counts"]["total"] == 7, ev
    assert ev["counts"] == events.counts(gw), ev
