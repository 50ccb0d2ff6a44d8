"""Which station a ThingSpeak write key names (HTTP ingest, /update), found without comparing the
key with every station's.

/update names its station by nothing but the write key. Found by a walk over every station
(hmac.compare_digest, one by one), each reading cost ~1 ms of the event loop at 10,000 stations
(benchmarks/fleet_scale.py): a fleet writing over HTTP paid O(N) per reading, O(N^2) in all.

The index maps the SHA-256 of each station's key to the stations holding it, in the order of
gw.stations (the walk's order: with a key held twice, the first station is the one named). The
dict is looked up by a digest, which tells a timing observer nothing about the stored keys, and
the station found is compared with compare_digest as before. It is rebuilt, lazily, after
`changed()` (called wherever the gateway sets a station's key or forgets a station; `added()`
puts a new station in), and is never trusted alone: a station found must still hold the key
(else the key changed without `changed()`: rebuilt, asked again), and a key not in it is looked
for by the old walk, so a station whose key was set some other way is found all the same (the
index is then rebuilt). An unknown key (answered 401, throttled per address) costs the walk it
always cost.
"""
import hashlib
import hmac


def _digest(key_bytes):
    return hashlib.sha256(key_bytes).digest()


def _key_bytes(st):
    """A station row's write key as /update compares it, or None when it has none."""
    k = st.get("ts_key")
    return str(k).encode() if k else None


class WriteKeys:
    def __init__(self, gw):
        self.gw = gw
        self._index = None      # digest of a key -> [station ids holding it, in gw.stations order]
        self.rebuilt = 0        # times the index was built (tests, the benchmark)

    def changed(self):
        """A station's key was set or cleared, or a station added or forgotten."""
        self._index = None

    def added(self, sid):
        """Station `sid` was just registered (the last of gw.stations): its key, if it has one,
        joins the index without a rebuild (a fleet registering at once, --auth none, rebuilt it
        for every station)."""
        st = self.gw.stations.get(sid)
        k = _key_bytes(st) if st is not None else None
        if self._index is None or k is None:
            return
        holders = self._index.setdefault(_digest(k), [])
        if sid not in holders:
            holders.append(sid)

    def _build(self):
        index = {}
        for sid, st in self.gw.stations.items():
            k = _key_bytes(st)
            if k is not None:
                index.setdefault(_digest(k), []).append(sid)
        self._index = index
        self.rebuilt += 1
        return index

    def _holds(self, sid, key):
        st = self.gw.stations.get(sid)
        k = _key_bytes(st) if st is not None else None
        return k is not None and hmac.compare_digest(k, key)

    def station(self, key):
        """The id of the first station (in gw.stations order) whose write key is `key` (bytes),
        else None: what the walk over every station answered."""
        index = self._index if self._index is not None else self._build()
        candidates = index.get(_digest(key))
        if candidates:
            for sid in candidates:
                if self._holds(sid, key):
                    return sid
            candidates = self._build().get(_digest(key), ())     # a key changed unannounced
            return next((sid for sid in candidates if self._holds(sid, key)), None)
        sid = self._walk(key)
        if sid is not None:
            self._build()   # a key set without changed(): known from now on
        return sid

    def _walk(self, key):
        return next((s for s, st in self.gw.stations.items() if st.get("ts_key") and
                     hmac.compare_digest(str(st["ts_key"]).encode(), key)), None)
