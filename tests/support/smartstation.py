"""A charge point built on the ocpp package that takes Smart Charging calls (issue 13): it
keeps the profiles it is sent as OCPP 1.6 says (one per id; a new one of the same purpose and
stack level on the same connector replaces the old), answers GetCompositeSchedule from them,
and says which limit applies to a transaction at a given time (`limit_now`): what the load
balancer's tests check the gateway's promises against, on what the stations received."""
from datetime import datetime, timezone

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from .stations import TestStation


def _t(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


class SmartStation(TestStation):
    def __init__(self, sid, ws):
        super().__init__(sid, ws)
        self.profiles = {}          # charging_profile_id -> (connector_id, profile as received, snake_case)
        self.set_calls = []         # every SetChargingProfile received: (connector_id, profile)
        self.refuse = False         # answer Rejected to SetChargingProfile

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id, cs_charging_profiles):
        p = cs_charging_profiles
        self.set_calls.append((connector_id, p))
        if self.refuse:
            return call_result.SetChargingProfile(status="Rejected")
        for pid, (c, q) in list(self.profiles.items()):
            if c == connector_id and q["stack_level"] == p["stack_level"] and \
                    q["charging_profile_purpose"] == p["charging_profile_purpose"]:
                del self.profiles[pid]
        self.profiles[p["charging_profile_id"]] = (connector_id, p)
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **kw):
        gone = [pid for pid, (c, p) in self.profiles.items()
                if (kw.get("id") is None or pid == kw["id"])
                and (kw.get("connector_id") is None or c == kw["connector_id"])
                and (kw.get("charging_profile_purpose") is None
                     or p["charging_profile_purpose"] == kw["charging_profile_purpose"])
                and (kw.get("stack_level") is None or p["stack_level"] == kw["stack_level"])]
        for pid in gone:
            del self.profiles[pid]
        self.received.append(("ClearChargingProfile", kw))
        return call_result.ClearChargingProfile(status="Accepted" if gone else "Unknown")

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id, duration, **kw):
        lim = self.limit_now(connector_id, None)
        if lim is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        return call_result.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start="2027-01-01T10:00:00Z",
            charging_schedule={"duration": duration, "charging_rate_unit": kw.get("charging_rate_unit") or "A",
                               "charging_schedule_period": [{"start_period": 0, "limit": lim}]})

    def _valid(self, p, now):
        return (not p.get("valid_from") or _t(p["valid_from"]) <= now) and \
            (not p.get("valid_to") or now < _t(p["valid_to"]))

    def limit_now(self, connector_id, transaction_id, now=None):
        """The limit (A, the first period's) that applies now on `connector_id` to transaction
        `transaction_id`: the TxProfile for it of the highest stack level still valid, else the
        TxDefaultProfile (the connector's, else connector 0's); capped by ChargePointMaxProfile.
        None: no profile, no limit."""
        now = now or datetime.now(timezone.utc)

        def best(purpose, connectors, tid=None):
            got = [p for c, p in self.profiles.values() if c in connectors and p["charging_profile_purpose"] == purpose
                   and self._valid(p, now) and (tid is None or p.get("transaction_id") == tid)]
            if not got:
                return None
            p = max(got, key=lambda p: p["stack_level"])
            return float(p["charging_schedule"]["charging_schedule_period"][0]["limit"])

        lim = best("TxProfile", (connector_id,), transaction_id) if transaction_id is not None else None
        if lim is None:
            lim = best("TxDefaultProfile", (connector_id,))
        if lim is None:
            lim = best("TxDefaultProfile", (0,))
        cap = best("ChargePointMaxProfile", (0,))
        if cap is not None:
            lim = cap if lim is None else min(lim, cap)
        return lim
