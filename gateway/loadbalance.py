"""Site load balancing (issue 13): groups of station connectors sharing a current limit.

A group (a site, a circuit) has a limit per phase in A, its phases, and member connectors, each
with a priority. The gateway divides the limit among the group's transactions (`allocate`: an
equal share; when there is not 6 A for every car, the lowest-priority, latest-started ones are
paused at 0 A) and tells each station with a TxProfile (SetChargingProfile, purpose TxProfile,
the transaction's id, stack level STACK_LEVEL, valid for tx_validity_s and refreshed while the
station is connected). Every member connector is also given a TxDefaultProfile at the group's
safe share (the limit, or an eco group's fallback, divided by its member connectors) when its
station connects: what the station keeps to when it loses the gateway and its TxProfile runs
out. docs/gateway.md "Charging profiles, load balancing and eco mode" has the safety argument.

The planner keeps, for each member connector, the most its station may apply now (`held`: the
TxProfile it accepted while that is valid, else its TxDefaultProfile) and re-plans each group on
every start, stop, suspension, disconnect, reconnect and limit change: lower limits are sent
first and answered before any higher one is sent, a higher one only when the sum of what every
station may apply stays within the limit, and a station that drops the link is counted at the
most it may still apply (its TxProfile until it runs out, never below its TxDefaultProfile).

One planner task per group, in one process: in a cluster, the process holding the lease
"loadbalance" (cluster.py).
"""
import asyncio
import json
import logging
import math
import re
import time
from typing import List, Optional

from ocpp.v16 import call as ocpp_call
from pydantic import BaseModel, Field, ValidationError

from picocharge.firmware import fields

from .commands import CommandError
from .eco import EcoLimit, EcoSubscriber
from .logonce import LogOnce
from .models import Closed

log = logging.getLogger(__name__)
_ONCE = LogOnce(log)

_CURRENT = fields.READINGS[fields.CURRENT][fields.KEY]   # the measured current, in the last reading
MIN_A = 6.0                 # IEC 61851-1: no car charges below 6 A; below it a car is paused (0 A)
STACK_LEVEL = 5             # the balancer's profiles' stack level (an operator's TxProfile above it wins)
TX_PROFILE_ID = 1300000     # + connector id: the balancer's TxProfile on that connector
DEFAULT_PROFILE_ID = 1310000    # + connector id: its TxDefaultProfile
TX_VALIDITY_S = 120.0       # a TxProfile's validTo this far ahead; sent again when half of it is left
LEASE = "loadbalance"       # cluster.py: the one process that plans holds this lease
CLUSTER_POLL_S = 2.0        # in a cluster, the transactions of every process read this often
MAX_GROUPS = 200
MAX_MEMBERS = 2000          # member connectors of one group
MAX_CONNECTOR = 1000
MAX_LIMIT_A = 10000.0
MAX_PRIORITY = 100
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
_SUSPENDED_EV = "SuspendedEV"
_ACTIVE = ("Charging", "SuspendedEVSE")
_GONE = ("Available",)      # a connector reported Available has no transaction any more


def deci(a):
    """A current in whole tenths of an ampere, rounded down (OCPP: one decimal)."""
    return int(math.floor(a * 10 + 1e-6))


def allocate(limit_a, cars):
    """{key: A} for `cars` [(key, priority, order, ev_paused)] under `limit_a`.

    The cars are ranked by priority (higher first), then by order (earlier first). As many as
    can have MIN_A each charge, the others get 0 (paused). A charging car the EV itself paused
    (SuspendedEV) is held at MIN_A, ready to resume; the rest of the limit is shared equally,
    rounded down to 0.1 A, so the sum never exceeds `limit_a` and no car gets less than MIN_A
    unless it gets 0."""
    lim = max(0, deci(limit_a))
    ranked = sorted(cars, key=lambda c: (-c[1], c[2]))
    n = min(len(ranked), lim // deci(MIN_A))
    out = {c[0]: 0.0 for c in ranked[n:]}
    on = ranked[:n]
    paused = [c for c in on if c[3]]
    active = [c for c in on if not c[3]]
    for c in paused:
        out[c[0]] = MIN_A
    if active:
        share = (lim - deci(MIN_A) * len(paused)) // len(active)
        for c in active:
            out[c[0]] = share / 10.0
    return out


def safe_share(limit_a, members):
    """The TxDefaultProfile limit of each of `members` connectors: the limit divided among them
    all (0 when that is below MIN_A: offline, they do not charge)."""
    if not members:
        return 0.0
    d = max(0, deci(limit_a)) // members
    return d / 10.0 if d >= deci(MIN_A) else 0.0


# --- the API's models --------------------------------------------------------------------

class Member(Closed):
    station: str = Field(min_length=1, max_length=64)
    connector: int = Field(1, ge=1, le=MAX_CONNECTOR)
    priority: int = Field(0, ge=0, le=MAX_PRIORITY, description="Higher charges first when there is not 6 A "
                                                                "for every car.")


class Eco(Closed):
    topic: str = Field(min_length=1, max_length=200, description="MQTT topic of the live value (no wildcards).")
    path: str = Field("", max_length=200, description="Dotted path to the number in the JSON payload "
                                                      "(\"\": the payload is the number), e.g. surplus.a or "
                                                      "phases.0.headroom.")
    scale: float = Field(1.0, ge=1e-6, le=1000, description="The value times this is A per phase (a value in W "
                                                         "over 3 phases at 230 V: 0.00145).")
    floor_a: float = Field(0.0, ge=0, le=MAX_LIMIT_A, description="The group's limit never goes below this.")
    fallback_a: float = Field(ge=0, le=MAX_LIMIT_A, description="The safe constant: the limit before the first "
                                                                "value and after timeout_s without one.")
    ramp_a_s: float = Field(1.0, ge=0.01, le=1000, description="The limit rises at most this fast (A/s); it falls "
                                                            "at once.")
    timeout_s: float = Field(60.0, ge=1, le=86400)


class GroupBody(Closed):
    name: str = Field(pattern=NAME.pattern, description="1..40 letters, digits, ., _ or -.")
    limit_a: float = Field(ge=0, le=MAX_LIMIT_A, description="Current limit per phase (A): the circuit's.")
    phases: int = Field(3, ge=1, le=3)
    members: List[Member] = Field(default_factory=list, max_length=MAX_MEMBERS)
    eco: Optional[Eco] = None


class GroupPatch(Closed):
    limit_a: Optional[float] = Field(None, ge=0, le=MAX_LIMIT_A)
    phases: Optional[int] = Field(None, ge=1, le=3)
    members: Optional[List[Member]] = Field(None, max_length=MAX_MEMBERS)
    eco: Optional[Eco] = None


class MemberView(BaseModel):
    station: str
    connector: int
    priority: int
    connected: bool
    transaction_id: Optional[int] = None
    ev_paused: bool = Field(False, description="The car paused itself (SuspendedEV): held at 6 A.")
    allocated_a: Optional[float] = Field(None, description="The planner's share (A per phase); null: no "
                                                           "transaction.")
    held_a: Optional[float] = Field(None, description="The most the station may apply now: its TxProfile while "
                                                      "valid, else its TxDefaultProfile.")
    valid_to: Optional[str] = Field(None, description="When the TxProfile the station holds runs out.")
    measured_a: Optional[float] = Field(None, description="The station's last Current.Import (A).")


class GroupView(BaseModel):
    name: str
    limit_a: float = Field(description="The configured limit per phase (A).")
    phases: int
    eco: Optional[dict] = None
    limit_now_a: float = Field(description="The limit planned with now (eco: the live value, ramped).")
    eco_state: Optional[dict] = Field(None, description="value (last good), age_s, fallback (true: timed out or "
                                                        "no value yet), bad_payloads.")
    safe_share_a: float = Field(description="Each member connector's TxDefaultProfile.")
    allocated_a: float
    held_a: float = Field(description="The sum of held_a: what the stations may apply together.")
    measured_a: Optional[float] = Field(None, description="Sum of the members' last Current.Import with a "
                                                          "transaction.")
    planner: str = Field(description="here, or elsewhere (another process of the cluster plans it).")
    members: List[MemberView]


class GroupRemoved(BaseModel):
    name: str
    removed: bool


EXAMPLE = {"name": "garage", "limit_a": 32, "phases": 3,
           "members": [{"station": "CP-1", "connector": 1, "priority": 1}]}


def check_group(gw, b):
    """GroupBody from a body; ValueError names what is wrong."""
    try:
        g = GroupBody.model_validate(b)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = ".".join(str(x) for x in err["loc"]) or "the body"
        raise ValueError("bad group: %s: %s" % (where, err["msg"][:1].lower() + err["msg"][1:]))
    seen = set()
    for i, m in enumerate(g.members):
        if m.station not in gw.stations:
            raise ValueError("bad group: members[%d].station %s is not a registered station (GET /api/stations)"
                             % (i, m.station))
        if (m.station, m.connector) in seen:
            raise ValueError("bad group: members[%d] names %s connector %d twice" % (i, m.station, m.connector))
        seen.add((m.station, m.connector))
    if g.eco is not None:
        if set(g.eco.topic) & set("+#") or "\x00" in g.eco.topic:
            raise ValueError("bad group: eco.topic must be one topic, without the wildcards + and #")
        if g.eco.fallback_a > g.limit_a or g.eco.floor_a > g.limit_a:
            raise ValueError("bad group: eco.fallback_a and eco.floor_a must be at most limit_a (%g A): limit_a "
                             "is the circuit's, the eco limit stays below it" % g.limit_a)
        if not gw.settings.mqtt_url:
            raise ValueError("bad group: eco mode follows a value on MQTT: start the gateway with --mqtt-url")
    return g


# --- the store ------------------------------------------------------------------------
def _read_groups(db):
    groups = {r[0]: {"name": r[0], "limit_a": float(r[1]), "phases": r[2], "eco": json.loads(r[3]) if r[3] else None,
                     "members": []}
              for r in db.execute("SELECT name, limit_a, phases, eco FROM lb_groups ORDER BY name")}
    for r in db.execute("SELECT grp, station, connector, priority FROM lb_members ORDER BY grp, station, connector"):
        if r[0] in groups:
            groups[r[0]]["members"].append({"station": r[1], "connector": r[2], "priority": r[3]})
    return groups


def _open_transactions(db):
    return [(r[0], r[1], r[2]) for r in db.execute(
        "SELECT id, station, connector FROM transactions WHERE stop_ts IS NULL ORDER BY id")]


def _write_group(db, g, created):
    db.execute("DELETE FROM lb_members WHERE grp=?", (g["name"],))
    db.execute("DELETE FROM lb_groups WHERE name=?", (g["name"],))
    db.execute("INSERT INTO lb_groups (name, limit_a, phases, eco, created) VALUES (?,?,?,?,?)",
               (g["name"], g["limit_a"], g["phases"], json.dumps(g["eco"]) if g["eco"] else None, created))
    for m in g["members"]:
        db.execute("INSERT INTO lb_members (grp, station, connector, priority) VALUES (?,?,?,?)",
                   (g["name"], m["station"], m["connector"], m["priority"]))


def _delete_group(db, name):
    db.execute("DELETE FROM lb_members WHERE grp=?", (name,))
    return db.execute("DELETE FROM lb_groups WHERE name=?", (name,)).rowcount


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class _Group:
    """One group at run time: its configuration, transactions and what each station holds."""

    def __init__(self, cfg):
        self.name = cfg["name"]
        self.dirty = asyncio.Event()
        self.idle = asyncio.Event()
        self.task = None
        self.joined = set()         # stations (re)connected: their TxDefaultProfiles go first
        self.was_on = set()         # member stations connected at the last plan (any process)
        self.alloc = {}             # key -> A of the last plan
        self.limit_now = None       # the limit of the last plan
        self.eco = None             # eco.EcoLimit of an eco group
        self.configure(cfg)

    def configure(self, cfg):
        self.cfg = cfg
        self.limit_a = cfg["limit_a"]
        self.phases = cfg["phases"]
        self.members = {(m["station"], m["connector"]): m["priority"] for m in cfg["members"]}
        base = min(self.limit_a, cfg["eco"]["fallback_a"]) if cfg.get("eco") else self.limit_a
        self.safe = safe_share(base, len(self.members))
        if self.eco is not None:
            self.eco.cap = self.limit_a     # the circuit's limit: eco mode stays below it

    def limit(self):
        return self.eco.value() if self.eco is not None else self.limit_a


class _Transactions(dict):
    """(station, connector) -> [transaction id, ev_paused, order], with each station's keys at
    hand: a StopTransaction names the station and the transaction, not the connector."""

    __slots__ = ("_by_station",)

    def __init__(self):
        super().__init__()
        self._by_station = {}

    def __setitem__(self, k, v):
        super().__setitem__(k, v)
        self._by_station.setdefault(k[0], set()).add(k)

    def __delitem__(self, k):
        super().__delitem__(k)
        keys = self._by_station[k[0]]
        keys.discard(k)
        if not keys:
            del self._by_station[k[0]]

    def of_station(self, sid):
        return self._by_station.get(sid, ())

    def pop(self, *a):
        raise TypeError("_Transactions: use del, which keeps the station index")

    popitem = clear = update = setdefault = pop


class LoadBalancer:
    """The gateway's groups (`gw.loadbalance`): events from the OCPP handlers, plans, the API's views."""

    tx_validity_s = TX_VALIDITY_S

    def __init__(self, gw):
        self.gw = gw
        self.groups = {}            # name -> _Group
        self.of = {}                # (station, connector) -> _Group
        self.by_station = {}        # station -> {its groups} (a connection's event finds them at once)
        self.tx = _Transactions()   # (station, connector) -> [transaction id, ev_paused, order]
        self.held = {}              # (station, connector) -> (transaction id, A, valid_to epoch) of its TxProfile
        self.defaults = {}          # (station, connector) -> A of the TxDefaultProfile it accepted
        self.sent = 0               # SetChargingProfile calls sent
        self._order = 0
        self.eco = None             # eco.EcoSubscriber (eco groups)
        self.plan_s = []            # seconds of the last plans (benchmarks/loadbalance.py)
        self._poll = None
        self.fence = 0.0            # until then (a takeover), a TxProfile not known is counted at the limit

    # --- life cycle -------------------------------------------------------------------
    async def start(self):
        groups = await self.gw.store.run(_read_groups)
        for cfg in groups.values():
            self._add(cfg)
        for tid, sid, conn in await self.gw.store.run(_open_transactions):
            self._order += 1
            self.tx[(sid, conn)] = [tid, False, self._order]
        # what the stations hold from before a restart is not known: counted at the limit until told
        self.fence = time.time() + self.tx_validity_s
        for g in self.groups.values():
            self._mark(g)
        if self.gw.cluster is not None:
            self._poll = asyncio.get_running_loop().create_task(self._follow_store())

    async def _follow_store(self):
        """In a cluster: the groups as another process changed them, read every CLUSTER_POLL_S."""
        while True:
            await asyncio.sleep(CLUSTER_POLL_S)
            try:
                groups = await self.gw.store.run(_read_groups)
            except Exception as e:  # noqa: B902 - the database away: the groups stay as they are
                _ONCE.warning("load balancer: groups not read again: %s", e, key=("follow",))
                continue
            for name, g in list(self.groups.items()):
                if name not in groups:
                    self._drop(g)
            for name, cfg in groups.items():
                g = self.groups.get(name)
                if g is None or g.cfg != cfg:
                    self._apply(cfg)

    def _apply(self, cfg):
        """A group added or changed: the same members keep their planner and what they were told
        (the next plan sends what changed, lower limits first); other members, a new planner."""
        old = self.groups.get(cfg["name"])
        keys = {(m["station"], m["connector"]) for m in cfg["members"]}
        if old is not None and set(old.members) == keys and old.cfg.get("eco") == cfg.get("eco"):
            old.configure(cfg)
            self._mark(old)
            return old
        if old is not None:
            self._drop(old)
        g = self._add(cfg)
        self._mark(g)
        return g

    async def stop(self):
        if self._poll is not None:
            self._poll.cancel()
        for g in list(self.groups.values()):
            self._drop(g)
        if self.eco is not None:
            await self.eco.stop()

    def took_over(self):
        """This process now plans (a cluster's lease): what the stations hold is not known here until
        the previous planner's TxProfiles ran out; until then each is counted at the group's limit,
        so that only lower limits are sent."""
        self.fence = time.time() + self.tx_validity_s
        self.held.clear()
        log.warning("load balancer: planning here now; limits held by the stations are taken as the groups' "
                    "until %s", _iso(self.fence))
        for g in self.groups.values():
            g.joined |= {sid for sid, _c in g.members if sid in self.gw.connected}
            self._mark(g)

    async def _sync_tx(self):
        """In a cluster: the open transactions of every process (its stations' events reach only it)."""
        rows = await self.gw.store.run(_open_transactions)
        open_ = {}
        for tid, sid, conn in rows:
            open_[(sid, conn)] = tid
        for k, tid in open_.items():
            t = self.tx.get(k)
            if t is None or t[0] != tid:
                self._order += 1
                self.tx[k] = [tid, False, self._order]
        for k in [k for k in self.tx if k in self.of and k not in open_]:
            del self.tx[k]

    def planning_here(self):
        cl = self.gw.cluster
        return cl is None or cl.holds("loadbalance")

    def _add(self, cfg):
        g = _Group(cfg)
        self.groups[g.name] = g
        for k in g.members:
            self.of[k] = g
            self.by_station.setdefault(k[0], set()).add(g)
        if cfg.get("eco"):
            g.eco = EcoLimit(cfg["eco"], cfg["limit_a"], lambda g=g: self._mark(g), g.name)
            self._eco_subscriber().follow(g.name, g.eco)
        g.joined = {sid for sid, _c in g.members if sid in self.gw.sessions}
        g.task = asyncio.get_running_loop().create_task(self._run(g))
        return g

    def _drop(self, g):
        if g.task is not None:
            g.task.cancel()
        if g.eco is not None and self.eco is not None:
            self.eco.unfollow(g.name)
        for k in list(g.members):
            if self.of.get(k) is g:
                del self.of[k]
            mine = self.by_station.get(k[0])
            if mine is not None:
                mine.discard(g)
                if not mine:
                    del self.by_station[k[0]]
        self.groups.pop(g.name, None)
        g.idle.set()

    def _eco_subscriber(self):
        if self.eco is None:
            self.eco = EcoSubscriber(self.gw.settings.mqtt_url)
        return self.eco

    # --- the API -----------------------------------------------------------------------
    async def put(self, g):
        """Add or replace a group (GroupBody)."""
        cfg = {"name": g.name, "limit_a": float(g.limit_a), "phases": g.phases,
               "members": sorted((m.model_dump() for m in g.members), key=lambda m: (m["station"], m["connector"])),
               "eco": g.eco.model_dump() if g.eco else None}     # as _read_groups gives it
        old = self.groups.get(g.name)
        if old is None and len(self.groups) >= MAX_GROUPS:
            raise ValueError("there are %d groups already, the most this gateway plans" % MAX_GROUPS)
        for i, m in enumerate(g.members):
            other = self.of.get((m.station, m.connector))
            if other is not None and other.name != g.name:
                raise ValueError("bad group: members[%d]: %s connector %d is in group %s: take it out of that "
                                 "group first (a connector is in one group)" % (i, m.station, m.connector,
                                                                               other.name))
        await self.gw.store.run(_write_group, cfg, _iso(time.time()))
        left = set(old.members) - {(m["station"], m["connector"]) for m in cfg["members"]} if old else set()
        ng = self._apply(cfg)
        await self._release(left)
        log.info("load group %s: %g A per phase over %d phase(s), %d member connector(s)%s", g.name, g.limit_a,
                 g.phases, len(ng.members), ", eco from MQTT %s" % g.eco.topic if g.eco else "")
        return self.view(g.name)

    async def delete(self, name):
        g = self.groups.get(name)
        if g is None:
            return False
        await self.gw.store.run(_delete_group, name)
        self._drop(g)
        await self._release(set(g.members))
        log.info("load group %s removed", name)
        return True

    async def _release(self, keys):
        """Connectors that left their group: the balancer's profiles cleared on them (connected ones)."""
        for sid, conn in sorted(keys):
            if (sid, conn) in self.of or sid not in self.gw.connected:
                continue
            for purpose in ("TxProfile", "TxDefaultProfile"):
                try:
                    await self.gw.call_station(sid, ocpp_call.ClearChargingProfile(
                        connector_id=conn, charging_profile_purpose=purpose, stack_level=STACK_LEVEL))
                except CommandError as e:
                    log.info("station=%s connector %d left its group: its %s not cleared: %s", sid, conn, purpose,
                             e.message)
            self.held.pop((sid, conn), None)
            self.defaults.pop((sid, conn), None)

    def views(self):
        return [self.view(n) for n in sorted(self.groups)]

    def view(self, name):
        g = self.groups[name]
        now = time.time()
        members = []
        measured = None
        for (sid, conn), prio in sorted(g.members.items()):
            t = self.tx.get((sid, conn))
            h = self.held.get((sid, conn))
            cur = (self.gw.last.get(sid) or {}).get(_CURRENT) if t else None
            if cur is not None:
                measured = (measured or 0.0) + cur
            members.append({"station": sid, "connector": conn, "priority": prio,
                            "connected": sid in self.gw.connected, "transaction_id": t[0] if t else None,
                            "ev_paused": bool(t and t[1]), "allocated_a": g.alloc.get((sid, conn)) if t else None,
                            "held_a": self._held((sid, conn), now) if t else None,
                            "valid_to": _iso(h[2]) if t and h and h[0] == t[0] and h[2] > now else None,
                            "measured_a": cur})
        eco = g.eco.state() if g.eco is not None else None
        return {"name": name, "limit_a": g.limit_a, "phases": g.phases, "eco": g.cfg.get("eco"),
                "limit_now_a": round(g.limit(), 3), "eco_state": eco, "safe_share_a": g.safe,
                "allocated_a": round(sum(m["allocated_a"] or 0.0 for m in members), 1),
                "held_a": round(sum(m["held_a"] or 0.0 for m in members), 1),
                "measured_a": None if measured is None else round(measured, 2),
                "planner": "here" if self.planning_here() else "elsewhere", "members": members}

    # --- events (the OCPP handlers, the connections) -------------------------------------
    def started(self, sid, conn, tid):
        """A transaction started (kept for every connector: one may join a group while charging)."""
        self._order += 1
        self.tx[(sid, conn)] = [tid, False, self._order]
        g = self.of.get((sid, conn))
        if g is not None:
            self._mark(g)

    def stopped(self, sid, tid):
        # the station's own connectors only: a walk over every open transaction here made the
        # StopTransactions of 10,000 stations (a fleet ending its sessions) hold the event loop
        # for minutes, O(N) each
        for k in [k for k in self.tx.of_station(sid) if self.tx[k][0] == tid]:
            del self.tx[k]
            g = self.of.get(k)
            if g is not None:
                self._mark(g)

    def status(self, sid, conn, status):
        k = (sid, conn)
        t = self.tx.get(k)
        if t is None:
            return
        g = self.of.get(k)
        if status in _GONE:
            del self.tx[k]
        elif status == _SUSPENDED_EV:
            t[1] = True
        elif status in _ACTIVE:
            t[1] = False
        else:
            return
        if g is not None:
            self._mark(g)

    def online(self, sid):
        for g in self._groups_of(sid):
            g.joined.add(sid)
            self._mark(g)

    def offline(self, sid):
        for g in self._groups_of(sid):
            g.joined.discard(sid)
            self._mark(g)

    def _groups_of(self, sid):
        return self.by_station.get(sid, ())

    def _mark(self, g):
        g.idle.clear()
        g.dirty.set()

    async def settled(self):
        """Wait until every group has planned since its last event (tests, the benchmark)."""
        while True:
            busy = [g for g in self.groups.values() if not g.idle.is_set()]
            if not busy:
                return
            await asyncio.wait([asyncio.ensure_future(g.idle.wait()) for g in busy])

    # --- planning -----------------------------------------------------------------------
    def _held(self, k, now):
        """The most station connector `k` may apply to its transaction now: the TxProfile it
        accepted for it while valid, else its TxDefaultProfile (the safe share if none is known)."""
        t = self.tx.get(k)
        h = self.held.get(k)
        d = self.defaults.get(k)
        g = self.of.get(k)
        base = d if d is not None else (g.safe if g is not None else 0.0)
        if t is not None and h is not None and h[0] == t[0] and now < h[2]:
            return h[1]
        if t is not None and h is None and now < self.fence and g is not None:
            return max(base, g.limit_a)     # told nothing since a restart or a takeover: not known
        return base

    async def _run(self, g):
        while True:
            every = self.tx_validity_s / 4
            if self.gw.cluster is not None:
                every = min(every, CLUSTER_POLL_S)
            try:
                await asyncio.wait_for(g.dirty.wait(), every)
            except asyncio.TimeoutError:
                pass    # the refresh of the TxProfiles (and of the stations gone quiet)
            g.dirty.clear()
            try:
                if self.planning_here():
                    t0 = time.perf_counter()
                    await self._plan(g)
                    self.plan_s.append(time.perf_counter() - t0)
                    del self.plan_s[:-1000]
            except asyncio.CancelledError:
                raise
            except Exception:
                _ONCE.exception("load group %s: planning failed", g.name, key=("plan", g.name))
            if not g.dirty.is_set():
                g.idle.set()

    async def _plan(self, g):
        sessions = self.gw.connected
        if self.gw.cluster is not None:
            await self._sync_tx()
        # stations that (re)connected: their TxDefaultProfile (the safe share) first, unless it is
        # higher than the one they had (the plan counts them at that one): then after the others'
        # TxProfiles went lower, as every raised TxDefaultProfile. In a cluster those connected to
        # another process are seen here (`now_on`), not told.
        now_on = {sid for sid, _c in g.members if sid in sessions}
        joined, g.joined = g.joined | (now_on - g.was_on), set()
        g.was_on = now_on
        keys = [k for k in g.members if k[0] in joined and k[0] in sessions]
        first = [k for k in keys if g.safe <= self.defaults.get(k, g.safe)]
        if first:
            await asyncio.gather(*(self._send_default(g, k) for k in first))
        # members whose TxDefaultProfile is not the group's safe share now (the limit or the members changed)
        stale = [k for k in g.members if k[0] in sessions and k in self.defaults and self.defaults[k] != g.safe]
        lower = [k for k in stale if g.safe < self.defaults[k]]
        if lower:
            await asyncio.gather(*(self._send_default(g, k) for k in lower))
        now = time.time()
        limit = g.limit()
        g.limit_now = limit
        online = [k for k in g.members if k in self.tx and k[0] in sessions]
        offline = [k for k in g.members if k[0] not in sessions]
        # a station out of reach may apply the most it was allowed, a car may start there at its default
        reserve = sum(max(self._held(k, now), self.defaults.get(k, g.safe)) for k in offline)
        alloc = allocate(limit - reserve, [(k, g.members[k], self.tx[k][2], self.tx[k][1]) for k in online])
        g.alloc = alloc
        half = now + self.tx_validity_s / 2
        down = [k for k, a in alloc.items() if a < self._held(k, now)]
        if down:
            await asyncio.gather(*(self._send_tx(g, k, alloc[k]) for k in down))
        now = time.time()
        total = reserve + sum(self._held(k, now) for k in g.members if k in self.tx and k[0] in sessions)
        up = []
        for k in sorted(alloc, key=lambda k: alloc[k] - self._held(k, now)):
            if k not in self.tx or k[0] not in sessions:
                continue
            cur = self._held(k, now)
            a = alloc[k]
            h = self.held.get(k)
            fresh = h is not None and h[0] == self.tx[k][0] and h[2] > half
            if a < cur or (a == cur and fresh):
                continue
            if a > cur and total - cur + a > limit + 1e-9:
                continue    # not before the stations above lower theirs (next plan)
            total += a - cur
            up.append(k)
        if up:
            await asyncio.gather(*(self._send_tx(g, k, alloc[k]) for k in up))
        higher = [k for k in stale if k not in lower and k[0] in sessions]
        if higher:
            await asyncio.gather(*(self._send_default(g, k) for k in higher))

    def _profile(self, g, pid, purpose, amps, tid=None, valid_to=None):
        p = {"charging_profile_id": pid, "stack_level": STACK_LEVEL, "charging_profile_purpose": purpose,
             "charging_profile_kind": "Relative",
             "charging_schedule": {"charging_rate_unit": "A", "charging_schedule_period": [
                 {"start_period": 0, "limit": amps, "number_phases": g.phases}]}}
        if tid is not None:
            p["transaction_id"] = tid
        if valid_to is not None:
            p["valid_to"] = _iso(valid_to)
        return p

    async def _call(self, sid, conn, profile):
        self.sent += 1
        try:
            ans = await self.gw.call_station(sid, ocpp_call.SetChargingProfile(connector_id=conn,
                                                                               cs_charging_profiles=profile))
            return ans.get("status")
        except CommandError as e:
            _ONCE.warning("station=%s connector %d: %s not applied: %s", sid, conn,
                          profile["charging_profile_purpose"], e.message,
                          key=("send", sid, profile["charging_profile_purpose"]))
            # 400: not sent (the schema); 409: not connected; a CALLERROR: not taken; else sent, its fate unknown
            return "NotSent" if e.status in (400, 409) else e.extra["code"] if e.extra.get("code") else None

    async def _send_tx(self, g, k, amps):
        t = self.tx.get(k)
        if t is None:
            return
        tid = t[0]
        valid_to = math.floor(time.time() + self.tx_validity_s)
        old = self.held.get(k)
        status = await self._call(k[0], k[1], self._profile(g, TX_PROFILE_ID + k[1], "TxProfile", amps, tid,
                                                              valid_to))
        if status == "Accepted":
            self.held[k] = (tid, amps, valid_to)
        elif status is None:
            # sent, no answer: it may apply either: counted at the higher until the later runs out
            if old is not None and old[0] == tid:
                self.held[k] = (tid, max(old[1], amps), max(old[2], valid_to))
            else:
                self.held[k] = (tid, max(amps, self._held(k, time.time())), valid_to)
        else:
            _ONCE.warning("station=%s connector %d refused the load group %s TxProfile (%s): it keeps to its "
                          "TxDefaultProfile", k[0], k[1], g.name, status, key=("refused", k[0]))

    async def _send_default(self, g, k):
        amps = g.safe
        old = self.defaults.get(k)
        status = await self._call(k[0], k[1], self._profile(g, DEFAULT_PROFILE_ID + k[1], "TxDefaultProfile", amps))
        if status == "Accepted":
            self.defaults[k] = amps
        elif status is None:
            self.defaults[k] = max(amps, old) if old is not None else amps
