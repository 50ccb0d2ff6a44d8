"""The stations waiting for an operator (--auth pending), counted without a walk over every station.

Each connection of an unknown station under --auth pending asks how many wait already
(--max-pending, 100 by default). Counted by a walk over gw.stations, that cost ~1 ms of the event
loop per connection at 10,000 stations (benchmarks/fleet_scale.py): a fleet coming online under
--auth pending, and the stations refused at the cap and trying again, paid O(N) each.

The set holds the ids of the pending stations: built from gw.stations at the first count, then
kept by `note(sid)`, which the gateway calls wherever it adds, forgets or changes the state of a
station. A count still looks at each id of the set (a station whose state changed without a note
is not counted), so it costs the number of pending stations, not the fleet.
"""


class PendingStations:
    def __init__(self, gw):
        self.gw = gw
        self._ids = None        # ids of the stations in state "pending"; None: not built yet

    def note(self, sid):
        """Station `sid` was added, forgotten, or its state set."""
        if self._ids is None:
            return
        st = self.gw.stations.get(sid)
        if st is not None and st.get("state") == "pending":
            self._ids.add(sid)
        else:
            self._ids.discard(sid)

    def count(self):
        """How many stations are pending: what sum(1 for st in gw.stations.values() if
        st["state"] == "pending") says."""
        stations = self.gw.stations
        if self._ids is None:
            self._ids = {sid for sid, st in stations.items() if st["state"] == "pending"}
        gone = [sid for sid in self._ids if sid not in stations or stations[sid]["state"] != "pending"]
        self._ids.difference_update(gone)
        return len(self._ids)
