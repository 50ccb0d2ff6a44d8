"""The load balancer's allocation (loadbalance.allocate, safe_share): a table of cases, and its
invariant for any limit and any cars (hypothesis)."""
from hypothesis import given, settings, strategies as st

from picocharge.gateway.loadbalance import allocate, safe_share

# (limit A, cars [(key, priority, order, ev_paused)], expected {key: A})
TABLE = [
    (32, [], {}),
    (32, [("a", 0, 1, False)], {"a": 32.0}),
    (32, [("a", 0, 1, False), ("b", 0, 2, False)], {"a": 16.0, "b": 16.0}),
    (32, [("a", 0, 1, False), ("b", 0, 2, False), ("c", 0, 3, False)], {"a": 10.6, "b": 10.6, "c": 10.6}),
    # 16 A is 2 cars at 6 A: the third, started last, is paused
    (16, [("a", 0, 1, False), ("b", 0, 2, False), ("c", 0, 3, False)], {"a": 8.0, "b": 8.0, "c": 0.0}),
    # ...unless it has a higher priority: then the latest of the others is paused
    (16, [("a", 0, 1, False), ("b", 0, 2, False), ("c", 1, 3, False)], {"a": 8.0, "b": 0.0, "c": 8.0}),
    (5.9, [("a", 0, 1, False)], {"a": 0.0}),
    (6, [("a", 0, 1, False), ("b", 0, 2, False)], {"a": 6.0, "b": 0.0}),
    (0, [("a", 5, 1, False)], {"a": 0.0}),
    # a car the EV paused (SuspendedEV) is held at 6 A; the rest shared by the others
    (32, [("a", 0, 1, True), ("b", 0, 2, False), ("c", 0, 3, False)], {"a": 6.0, "b": 13.0, "c": 13.0}),
    (12, [("a", 0, 1, True), ("b", 0, 2, False), ("c", 0, 3, False)], {"a": 6.0, "b": 6.0, "c": 0.0}),
    # tenths of an ampere, rounded down: 3 x 6.3 = 18.9 <= 18.95
    (18.95, [("a", 0, 1, False), ("b", 0, 2, False), ("c", 0, 3, False)], {"a": 6.3, "b": 6.3, "c": 6.3}),
    (18, [("a", 0, 1, False), ("b", 0, 2, False), ("c", 0, 3, False)], {"a": 6.0, "b": 6.0, "c": 6.0}),
]


def test_allocate__table():
    for limit, cars, want in TABLE:
        got = allocate(limit, cars)
        assert got == want, (limit, cars, got)


def test_safe_share__table():
    assert [safe_share(lim, n) for lim, n in ((32, 4), (32, 5), (32, 6), (100, 3), (0, 1), (10, 0))] == [
        8.0, 6.4, 0.0, 33.3, 0.0, 0.0]


cars_st = st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=40)


@settings(max_examples=400, deadline=None)
@given(st.floats(-10, 500, allow_nan=False), cars_st)
def test_allocate__sum_within_limit_and_no_car_below_6a(limit, spec):
    cars = [(i, prio, i, paused) for i, (prio, paused) in enumerate(spec)]
    got = allocate(limit, cars)
    assert set(got) == {c[0] for c in cars}, got
    assert sum(got.values()) <= max(limit, 0) + 1e-9, (limit, got)
    assert all(a == 0 or a >= 6 for a in got.values()), got
    assert all(round(a, 1) == a for a in got.values()), got
    # a paused car never has a higher priority than a charging one
    on = [c for c in cars if got[c[0]] > 0]
    off = [c for c in cars if got[c[0]] == 0]
    if on and off:
        assert max(c[1] for c in off) <= min(c[1] for c in on), (cars, got)
    # as many cars charge as 6 A each allows
    assert len(on) == min(len(cars), int(max(limit, 0) * 10 + 1e-6) // 60), (limit, got)


# --- the open transactions' table: a StopTransaction finds its station's connectors at once ---
tx_ops = st.lists(st.tuples(st.sampled_from(("start", "status_gone", "stop")), st.integers(0, 5),
                            st.integers(0, 2), st.integers(0, 3)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(tx_ops)
def test_transactions__stop_ends_what_a_walk_over_all_would_and_the_index_follows(ops):
    """LoadBalancer.stopped looks only at the station's own keys (an index kept by the table):
    it ends exactly what the walk over every open transaction ended, and the index always names
    each station's open connectors, no more."""
    from picocharge.gateway.loadbalance import LoadBalancer, _Transactions

    class Lb:   # the state stopped() reads: the table, group membership, the planner's mark
        stopped = LoadBalancer.stopped

        def __init__(self):
            self.tx, self.of, self.marked = _Transactions(), {(1, 1): "g", (2, 0): "h"}, []

        def _mark(self, g):
            self.marked.append(g)

    lb, model = Lb(), {}
    for op, sid, conn, tid in ops:
        if op == "start":
            lb.tx[(sid, conn)] = [tid, False, 0]
            model[(sid, conn)] = [tid, False, 0]
        elif op == "status_gone":
            if (sid, conn) in lb.tx:
                del lb.tx[(sid, conn)]
                del model[(sid, conn)]
        else:
            ended = [k for k, t in model.items() if k[0] == sid and t[0] == tid]
            for k in ended:
                del model[k]
            lb.marked.clear()
            lb.stopped(sid, tid)
            assert sorted(lb.marked) == sorted(lb.of[k] for k in ended if k in lb.of)
        assert dict(lb.tx) == model
        for s in range(6):
            assert set(lb.tx.of_station(s)) == {k for k in model if k[0] == s}
    try:
        lb.tx.pop((0, 0), None)
    except TypeError as e:      # a way round the index is refused, not silently wrong
        assert "del" in str(e)
    else:
        raise AssertionError("_Transactions.pop must be refused")
