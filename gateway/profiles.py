"""Charging profiles (OCPP 1.6 Smart Charging): the API bodies of set-charging-profile,
clear-charging-profile and get-composite-schedule, checked at the door field by field, and the
composite schedules the stations report, kept (one per station and connector, the last one).

The bodies are OCPP's in snake_case, as the other commands' are: `cs_charging_profiles` is a
csChargingProfiles object ({"charging_profile_id", "stack_level", "charging_profile_purpose",
"charging_profile_kind", "charging_schedule": {"charging_rate_unit", "charging_schedule_period":
[{"start_period", "limit"}]}, ...}). The models bound every number and list; `check_body` adds
what a model cannot say field by field (periods ascending, Recurring needs recurrency_kind, a
TxProfile is for a connector...), naming the field in its message.
"""
import json
import logging
from datetime import datetime
from typing import List, Literal, Optional

from pydantic import BaseModel, Field

from .csms import utc_now
from .models import Closed

log = logging.getLogger(__name__)

MAX_PERIODS = 48            # charging_schedule_period entries at most (ChargingScheduleMaxPeriods)
MAX_STACK_LEVEL = 100       # stack_level 0..this (ChargeProfileMaxStackLevel)
MAX_CONNECTOR = 1000
MAX_DURATION_S = 7 * 86400  # get-composite-schedule: a week at most; a schedule's duration too
MAX_LIMIT = {"A": 1000.0, "W": 1000000.0}   # a period's limit at most, by charging_rate_unit
_INT32 = 2 ** 31 - 1
_DT = {"format": "date-time", "example": "2027-01-01T10:00:00Z"}



class SchedulePeriod(Closed):
    start_period: int = Field(ge=0, le=MAX_DURATION_S, description="Seconds from the schedule's start.")
    limit: float = Field(ge=0, le=MAX_LIMIT["W"], description="A or W (the schedule's unit); one decimal at most.")
    number_phases: Optional[int] = Field(None, ge=1, le=3)


class ChargingSchedule(Closed):
    duration: Optional[int] = Field(None, ge=0, le=MAX_DURATION_S)
    start_schedule: Optional[str] = Field(None, max_length=40, json_schema_extra=_DT)
    charging_rate_unit: Literal["A", "W"]
    charging_schedule_period: List[SchedulePeriod] = Field(min_length=1, max_length=MAX_PERIODS)
    min_charging_rate: Optional[float] = Field(None, ge=0, le=MAX_LIMIT["W"])


class ChargingProfile(Closed):
    charging_profile_id: int = Field(ge=1, le=_INT32)
    transaction_id: Optional[int] = Field(None, ge=-_INT32 - 1, le=_INT32)
    stack_level: int = Field(ge=0, le=MAX_STACK_LEVEL)
    charging_profile_purpose: Literal["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"]
    charging_profile_kind: Literal["Absolute", "Recurring", "Relative"]
    recurrency_kind: Optional[Literal["Daily", "Weekly"]] = None
    valid_from: Optional[str] = Field(None, max_length=40, json_schema_extra=_DT)
    valid_to: Optional[str] = Field(None, max_length=40, json_schema_extra=_DT)
    charging_schedule: ChargingSchedule


class SetChargingProfile(Closed):
    connector_id: int = Field(ge=0, le=MAX_CONNECTOR, description="0: the whole charge point "
                                                                   "(ChargePointMaxProfile, TxDefaultProfile).")
    cs_charging_profiles: ChargingProfile


class ClearChargingProfile(Closed):
    id: Optional[int] = Field(None, ge=1, le=_INT32, description="The profile's id (then the rest is ignored).")
    connector_id: Optional[int] = Field(None, ge=0, le=MAX_CONNECTOR)
    charging_profile_purpose: Optional[Literal["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"]] = None
    stack_level: Optional[int] = Field(None, ge=0, le=MAX_STACK_LEVEL)


class GetCompositeSchedule(Closed):
    connector_id: int = Field(ge=0, le=MAX_CONNECTOR)
    duration: int = Field(ge=1, le=MAX_DURATION_S, description="Seconds, a week at most.")
    charging_rate_unit: Optional[Literal["A", "W"]] = None


class CompositeSchedule(BaseModel):
    connector_id: int
    status: str = Field(description="The station's answer: Accepted or Rejected.")
    schedule_start: Optional[str] = None
    charging_schedule: Optional[dict] = Field(None, description="OCPP's chargingSchedule, as the station sent it.")
    duration: int = Field(description="The duration asked for, seconds.")
    charging_rate_unit: Optional[str] = Field(None, description="The unit asked for (null: the station's choice).")
    ts: str = Field(description="When the answer came.", json_schema_extra={"format": "date-time"})


EXAMPLE_PROFILE = {"charging_profile_id": 1, "stack_level": 0, "charging_profile_purpose": "TxDefaultProfile",
                   "charging_profile_kind": "Absolute",
                   "charging_schedule": {"charging_rate_unit": "A",
                                         "charging_schedule_period": [{"start_period": 0, "limit": 16}]}}
# command -> (body model, example): as models.COMMAND_BODIES
COMMAND_BODIES = {
    "set-charging-profile": (SetChargingProfile, {"connector_id": 0, "cs_charging_profiles": EXAMPLE_PROFILE}),
    "clear-charging-profile": (ClearChargingProfile, {"charging_profile_purpose": "TxDefaultProfile"}),
    "get-composite-schedule": (GetCompositeSchedule, {"connector_id": 1, "duration": 3600}),
}


def _when(v, where):
    try:
        d = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError("%s %r is not an ISO 8601 date-time (e.g. 2027-01-01T10:00:00Z)" % (where, str(v)[:40]))
    if d.tzinfo is None:
        raise ValueError("%s %r has no time zone: end it with Z (UTC) or +hh:mm" % (where, v[:40]))
    return d


def check_profile(p, connector_id, where="cs_charging_profiles"):
    """ValueError naming the field of a csChargingProfiles object (already through its model:
    the types and bounds are right) that OCPP 1.6 does not allow with the others."""
    purpose, kind = p["charging_profile_purpose"], p["charging_profile_kind"]
    sch = p["charging_schedule"]
    unit = sch["charging_rate_unit"]
    if kind == "Recurring" and not p.get("recurrency_kind"):
        raise ValueError("%s.recurrency_kind is missing: a Recurring profile is Daily or Weekly" % where)
    if kind != "Recurring" and p.get("recurrency_kind"):
        raise ValueError("%s.recurrency_kind goes with charging_profile_kind Recurring only, not %s" % (where, kind))
    if kind == "Recurring" and not sch.get("start_schedule"):
        raise ValueError("%s.charging_schedule.start_schedule is missing: a Recurring profile repeats from it"
                         % where)
    if kind == "Relative" and sch.get("start_schedule"):
        raise ValueError("%s.charging_schedule.start_schedule must be left out of a Relative profile (it starts "
                         "with the transaction)" % where)
    if p.get("transaction_id") is not None and purpose != "TxProfile":
        raise ValueError("%s.transaction_id goes with charging_profile_purpose TxProfile only, not %s"
                         % (where, purpose))
    if purpose == "TxProfile" and connector_id == 0:
        raise ValueError("connector_id must be a connector (1 or more) for a TxProfile, not 0")
    if purpose == "ChargePointMaxProfile" and connector_id != 0:
        raise ValueError("connector_id must be 0 for a ChargePointMaxProfile (it limits the whole charge point)")
    frm = _when(p["valid_from"], where + ".valid_from") if p.get("valid_from") else None
    to = _when(p["valid_to"], where + ".valid_to") if p.get("valid_to") else None
    if frm and to and not frm < to:
        raise ValueError("%s.valid_to %s must be after valid_from %s" % (where, p["valid_to"], p["valid_from"]))
    if sch.get("start_schedule"):
        _when(sch["start_schedule"], where + ".charging_schedule.start_schedule")
    periods = sch["charging_schedule_period"]
    if periods[0]["start_period"] != 0:
        raise ValueError("%s.charging_schedule.charging_schedule_period[0].start_period must be 0 (the first "
                         "period starts with the schedule), not %d" % (where, periods[0]["start_period"]))
    for i, per in enumerate(periods):
        at = "%s.charging_schedule.charging_schedule_period[%d]" % (where, i)
        if i and per["start_period"] <= periods[i - 1]["start_period"]:
            raise ValueError("%s.start_period %d must be greater than the period before's (%d): periods in "
                             "ascending order" % (at, per["start_period"], periods[i - 1]["start_period"]))
        if per["limit"] > MAX_LIMIT[unit]:
            raise ValueError("%s.limit %g is over %g %s" % (at, per["limit"], MAX_LIMIT[unit], unit))
        if round(per["limit"], 1) != per["limit"]:
            raise ValueError("%s.limit %r has more than one decimal (OCPP 1.6)" % (at, per["limit"]))
        if sch.get("duration") is not None and per["start_period"] >= sch["duration"]:
            raise ValueError("%s.start_period %d is not within the schedule's duration (%d s)"
                             % (at, per["start_period"], sch["duration"]))


def check_body(name, body):
    """The checks of `name`'s body beyond its model (set-charging-profile); ValueError says which field."""
    if name == "set-charging-profile":
        check_profile(body["cs_charging_profiles"], body["connector_id"])


def profile_kwargs(body):
    """set-charging-profile's body as ocpp's call.SetChargingProfile kwargs (the nested keys are
    turned camelCase by the ocpp package on the way out)."""
    return {"connector_id": int(body["connector_id"]),
            "cs_charging_profiles": _drop_nones(body["cs_charging_profiles"])}


def _drop_nones(v):
    if isinstance(v, dict):
        return {k: _drop_nones(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_nones(x) for x in v]
    return v


# --- the composite schedules the stations report --------------------------------------------
MAX_SCHEDULE_TEXT = 16384   # a chargingSchedule kept at most this long (JSON); a longer one is cut


def _put(db, sid, connector, status, start, schedule, duration, unit, ts):
    db.execute("DELETE FROM composite_schedules WHERE station=? AND connector=?", (sid, connector))
    db.execute("INSERT INTO composite_schedules (station, connector, status, schedule_start, schedule, duration, "
               "unit, ts) VALUES (?,?,?,?,?,?,?,?)", (sid, connector, status, start, schedule, duration, unit, ts))


def _rows(db, sid):
    return [{"connector_id": r[0], "status": r[1], "schedule_start": r[2],
             "charging_schedule": json.loads(r[3]) if r[3] else None, "duration": r[4], "charging_rate_unit": r[5],
             "ts": r[6]}
            for r in db.execute("SELECT connector, status, schedule_start, schedule, duration, unit, ts FROM "
                                "composite_schedules WHERE station=? ORDER BY connector", (sid,))]


async def keep_composite(store, sid, body, answer):
    """Store a station's answer to get-composite-schedule (what the API returned: OCPP's camelCase)."""
    sched = answer.get("chargingSchedule")
    text = json.dumps(sched, separators=(",", ":"), default=float) if isinstance(sched, dict) else None
    if text is not None and len(text) > MAX_SCHEDULE_TEXT:
        log.warning("station=%s composite schedule of %d characters not kept (at most %d)", sid, len(text),
                    MAX_SCHEDULE_TEXT)
        text = None
    connector = answer.get("connectorId", body["connector_id"])
    if not isinstance(connector, int) or not 0 <= connector <= MAX_CONNECTOR:
        connector = body["connector_id"]
    await store.run(_put, sid, connector, str(answer.get("status"))[:20], str(answer["scheduleStart"])[:40]
                    if answer.get("scheduleStart") else None, text, body["duration"], body.get("charging_rate_unit"),
                    utc_now())


async def composites(store, sid):
    return await store.run(_rows, sid)
