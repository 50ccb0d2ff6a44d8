# Checks of the Smart Charging logic (firmware/composite.py, chargeprofile.py), written once and run under both
# interpreters like pure_checks.py: pytest imports this file under CPython (one test per check),
# the unix-port micropython runs it as a script ("ok <name>" per check). MicroPython-compatible
# code only.
#
# The table follows the situations of OCPP 1.6 edition 2, section 3.13 (Smart Charging):
# stacking (3.13.2: a daily default with a higher stack level for a holiday, valid for one day),
# combining purposes (3.13.3: ChargePointMaxProfile caps a TxProfile; a TxProfile replaces the
# TxDefaultProfile), Relative schedules from the start of the transaction (7.8), Recurring
# Daily/Weekly, validFrom/validTo, limits in W at the station's voltage and phases (7.9), and
# GetCompositeSchedule's periods (5.7).
try:
    from support import checkrun   # CPython: tests/ is on sys.path
except ImportError:
    import checkrun                # micropython runs this file from tests/support

import gc

import chargeprofile
import composite
import ocppj

T0 = 1780272000   # 2026-06-01T00:00:00Z, a Monday (epoch s)
H = 3600
D = 86400


def iso(s):
    return ocppj.iso_ms(s * 1000)


def prof(pid, purpose, stack, kind, periods, unit="A", start=None, dur=None, rec=None, vf=None, vt=None,
         txid=None):
    """A csChargingProfiles object as a central system sends it; periods: [(start s, limit[, phases])]."""
    ps = []
    for q in periods:
        d = {"startPeriod": q[0], "limit": q[1]}
        if len(q) > 2:
            d["numberPhases"] = q[2]
        ps.append(d)
    sch = {"chargingRateUnit": unit, "chargingSchedulePeriod": ps}
    if start is not None:
        sch["startSchedule"] = iso(start)
    if dur is not None:
        sch["duration"] = dur
    p = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
         "chargingProfileKind": kind, "chargingSchedule": sch}
    for k, v in (("recurrencyKind", rec), ("transactionId", txid)):
        if v is not None:
            p[k] = v
    if vf is not None:
        p["validFrom"] = iso(vf)
    if vt is not None:
        p["validTo"] = iso(vt)
    return p


def c(p, connector=1):
    return chargeprofile.compact(p, connector, ocppj.parse_iso_ms, 8, 24)


# the daily default of 3.13.2: 32 A at night, 16 A from 08:00 to 20:00; a holiday (day 2)
# at stack level 1: 32 A all day
DAILY = c(prof(1, "TxDefaultProfile", 0, "Recurring", [(0, 32), (8 * H, 16), (20 * H, 32)],
               start=T0, rec="Daily"), 0)
HOLIDAY = c(prof(2, "TxDefaultProfile", 1, "Absolute", [(0, 32)], start=T0 + D, vf=T0 + D, vt=T0 + 2 * D), 0)
CPMAX_20 = c(prof(3, "ChargePointMaxProfile", 0, "Absolute", [(0, 20)], start=T0), 0)
TX_REL = c(prof(4, "TxProfile", 0, "Relative", [(0, 32), (H, 10)]))
TX_REL_DUR = c(prof(5, "TxProfile", 2, "Relative", [(0, 6), (600, 12)], dur=1800))
DEF_16 = c(prof(6, "TxDefaultProfile", 0, "Absolute", [(0, 16)], start=T0))
TX_24 = c(prof(7, "TxProfile", 0, "Absolute", [(0, 24)], start=T0, txid=1001))
CPMAX_W1 = c(prof(8, "ChargePointMaxProfile", 1, "Absolute", [(0, 3680)], unit="W", start=T0), 0)
DEF_W3 = c(prof(9, "TxDefaultProfile", 0, "Absolute", [(0, 11040, 3)], unit="W", start=T0))
DEF_W1 = c(prof(10, "TxDefaultProfile", 0, "Absolute", [(0, 3680, 1)], unit="W", start=T0))
LATER = c(prof(11, "TxDefaultProfile", 3, "Absolute", [(0, 8)], start=T0, vf=T0 + 5 * H))
WEEKLY = c(prof(12, "TxDefaultProfile", 0, "Recurring", [(0, 10), (5 * D, 32)], start=T0, rec="Weekly"))
DEF_ON_1 = c(prof(13, "TxDefaultProfile", 0, "Absolute", [(0, 13)], start=T0))

# (name, profiles, t, connector, tx_id, tx_start, volts, phases, hw_max, (limit, next change))
CASES = [
    ("stacking: the daily default, day 1 at 09:00", [DAILY, HOLIDAY], T0 + 9 * H, 1, None, None, 230, 1, 32,
     (16, T0 + 20 * H)),
    ("stacking: day 1 at 21:00", [DAILY, HOLIDAY], T0 + 21 * H, 1, None, None, 230, 1, 32, (32, T0 + D)),
    ("stacking: the holiday at stack 1 wins on day 2", [DAILY, HOLIDAY], T0 + D + 9 * H, 1, None, None, 230, 1,
     32, (32, T0 + D + 20 * H)),
    ("stacking: after the holiday's validTo, stack 0 again", [DAILY, HOLIDAY], T0 + 2 * D + 9 * H, 1, None, None,
     230, 1, 32, (16, T0 + 2 * D + 20 * H)),
    ("stacking: the station's own maximum caps every profile", [DAILY, HOLIDAY], T0 + 21 * H, 1, None, None, 230, 1,
     16, (16, T0 + D)),
    ("combining: ChargePointMaxProfile caps the TxProfile", [CPMAX_20, TX_REL], T0 + 200, 1, 0, T0 + 100, 230, 1,
     32, (20, T0 + 100 + H)),
    ("combining: the relative TxProfile's second period", [CPMAX_20, TX_REL], T0 + 100 + H, 1, 0, T0 + 100, 230, 1,
     32, (10, composite.NEVER)),
    ("combining: a TxProfile replaces the TxDefaultProfile", [DEF_16, TX_24], T0 + 60, 1, 1001, T0, 230, 1, 32,
     (24, composite.NEVER)),
    ("combining: without a transaction the TxDefaultProfile", [DEF_16, TX_24], T0 + 60, 1, None, None, 230, 1, 32,
     (16, composite.NEVER)),
    ("combining: a TxProfile of another transaction does not count", [DEF_16, TX_24], T0 + 60, 1, 1002, T0, 230, 1,
     32, (16, composite.NEVER)),
    ("combining: connector 0 has only the ChargePointMaxProfile", [CPMAX_20, DEF_16, TX_24], T0 + 60, 0, 1001, T0,
     230, 1, 32, (20, composite.NEVER)),
    ("combining: a connector's own default before connector 0's", [DAILY, DEF_ON_1], T0 + 60, 1, None, None, 230,
     1, 32, (13, T0 + 8 * H)),
    ("relative: from the start of the transaction", [TX_REL_DUR, DEF_16], T0 + 1000 + 300, 1, 0, T0 + 1000, 230,
     1, 32, (6, T0 + 1600)),
    ("relative: second period", [TX_REL_DUR, DEF_16], T0 + 1000 + 900, 1, 0, T0 + 1000, 230, 1, 32,
     (12, T0 + 2800)),
    ("relative: after its duration, the default", [TX_REL_DUR, DEF_16], T0 + 1000 + 1900, 1, 0, T0 + 1000, 230, 1,
     32, (16, composite.NEVER)),
    ("mixed units: 3680 W on one phase is 16 A, under 20 A of a default", [CPMAX_W1, CPMAX_20], T0 + 5, 1, None,
     None, 230, 1, 32, (16, composite.NEVER)),
    ("mixed units: 11040 W on 3 phases of a 3-phase station is 16 A", [DEF_W3], T0 + 5, 1, None, None, 230, 3, 32,
     (16, composite.NEVER)),
    ("mixed units: 11040 W of a 3-phase profile on a 1-phase station is 48 A", [DEF_W3], T0 + 5, 1, None, None,
     230, 1, 63, (48, composite.NEVER)),
    ("mixed units: 3680 W on 1 phase of a 3-phase station is 16 A", [DEF_W1], T0 + 5, 1, None, None, 230, 3, 32,
     (16, composite.NEVER)),
    ("validFrom: not before it", [DEF_16, LATER], T0 + H, 1, None, None, 230, 1, 32, (16, T0 + 5 * H)),
    ("validFrom: from it on", [DEF_16, LATER], T0 + 6 * H, 1, None, None, 230, 1, 32, (8, composite.NEVER)),
    ("recurring weekly: the weekend of week 2", [WEEKLY], T0 + 7 * D + 6 * D, 1, None, None, 230, 1, 32,
     (32, T0 + 14 * D)),
    ("recurring weekly: Monday of week 3", [WEEKLY], T0 + 14 * D + H, 1, None, None, 230, 1, 32,
     (10, T0 + 14 * D + 5 * D)),
    ("no profile: the station's maximum", [], T0, 1, 0, T0, 230, 1, 32, (32, composite.NEVER)),
]


def check_composite__table_of_cases():
    for name, profiles, t, conn, txid, txs, v, ph, hw, want in CASES:
        got = composite.limit_at(profiles, t, conn, txid, txs, v, ph, hw)
        assert got == want, (name, got, want)


def check_composite__schedule_over_a_day_in_a_and_w():
    got = composite.schedule([DAILY, CPMAX_20], T0, D, 1, None, None, 230, 1, 32, "A", 24)
    assert got == [{"startPeriod": 0, "limit": 20.0}, {"startPeriod": 8 * H, "limit": 16.0},
                   {"startPeriod": 20 * H, "limit": 20.0}], got
    got = composite.schedule([DAILY], T0 + 6 * H, 4 * H, 1, None, None, 230, 1, 32, "W", 24)
    assert got == [{"startPeriod": 0, "limit": 7360.0}, {"startPeriod": 2 * H, "limit": 3680.0}], got
    # a transaction's relative profile from its start; at most max_periods entries
    got = composite.schedule([TX_REL_DUR, DEF_16], T0 + 1000, 3600, 1, 0, T0 + 1000, 230, 1, 32, "A", 24)
    assert got == [{"startPeriod": 0, "limit": 6.0}, {"startPeriod": 600, "limit": 12.0},
                   {"startPeriod": 1800, "limit": 16.0}], got
    got = composite.schedule([TX_REL_DUR, DEF_16], T0 + 1000, 3600, 1, 0, T0 + 1000, 230, 1, 32, "A", 2)
    assert len(got) == 2, got
    # a week of the daily default: 15 changes, no more entries than changes
    got = composite.schedule([DAILY, HOLIDAY], T0, 7 * D, 1, None, None, 230, 1, 32, "A", 100)
    assert len(got) == 1 + 2 * 7 - 2, got


def check_composite__replace_and_clear():
    ps = [c(prof(1, "TxDefaultProfile", 0, "Absolute", [(0, 10)], start=T0)),
          c(prof(2, "TxDefaultProfile", 1, "Absolute", [(0, 11)], start=T0)),
          c(prof(3, "ChargePointMaxProfile", 0, "Absolute", [(0, 30)], start=T0), 0)]
    composite.replace(ps, c(prof(1, "TxDefaultProfile", 2, "Absolute", [(0, 12)], start=T0)))  # same id
    assert sorted(p[0] for p in ps) == [1, 2, 3] and [p[3] for p in ps if p[0] == 1] == [2], ps
    composite.replace(ps, c(prof(9, "TxDefaultProfile", 1, "Absolute", [(0, 13)], start=T0)))  # same stack
    assert sorted(p[0] for p in ps) == [1, 3, 9], ps
    assert composite.clear(ps, pid=42) == 0 and len(ps) == 3
    assert composite.clear(ps, purpose=composite.DEFAULT, stack=2) == 1 and sorted(p[0] for p in ps) == [3, 9]
    assert composite.clear(ps, connector=0) == 1 and [p[0] for p in ps] == [9]
    assert composite.clear(ps, pid=9, connector=0) == 1 and ps == []   # an id: the others do not count


def check_compact__valid_and_invalid_profiles():
    p = c(prof(5, "TxProfile", 3, "Recurring", [(0, 16, 1), (60, 7.5)], unit="W", start=T0, dur=600, rec="Daily",
               vf=T0, vt=T0 + D, txid=7))
    assert p == [5, 1, 2, 3, "D", T0, T0 + D, T0, 600, "W", [[0, 16, 1], [60, 7.5, 0]], 7], p
    assert c(prof(6, "TxDefaultProfile", 0, "Absolute", [(0, 16)]))[4] == "R"   # no start: from charging
    bad = [
        (prof(1, "TxDefaultProfile", 0, "Recurring", [(0, 16)], start=T0), 1, "recurrencyKind"),
        (prof(1, "TxDefaultProfile", 0, "Recurring", [(0, 16)], rec="Daily"), 1, "startSchedule"),
        (prof(1, "TxDefaultProfile", 0, "Absolute", [(0, 16)], rec="Daily"), 1, "only for a Recurring"),
        (prof(1, "TxProfile", 0, "Relative", [(0, 16)]), 0, "not 0"),
        (prof(1, "ChargePointMaxProfile", 0, "Relative", [(0, 16)]), 1, "connector 0"),
        (prof(1, "TxDefaultProfile", 9, "Relative", [(0, 16)]), 1, "stackLevel"),
        (prof(1, "TxDefaultProfile", 0, "Relative", [(i * 60, 16) for i in range(25)]), 1, "ChargingScheduleMaxPeriods"),
        (prof(1, "TxDefaultProfile", 0, "Relative", [(10, 16)]), 1, "startPeriod"),
        (prof(1, "TxDefaultProfile", 0, "Relative", [(0, 16), (0, 10)]), 1, "startPeriod"),
        (prof(1, "TxDefaultProfile", 0, "Relative", [(0, -1)]), 1, "limit"),
        (prof(1, "TxDefaultProfile", 0, "Relative", [(0, 16, 4)]), 1, "numberPhases"),
        (prof(1, "TxDefaultProfile", 0, "Relative", [(0, 16)], unit="kW"), 1, "chargingRateUnit"),
        (prof(1, "TxDefaultProfile", 0, "Relative", [(0, 16)], txid=3), 1, "transactionId"),
        (prof(1, "TxDefaultProfile", 0, "Sometimes", [(0, 16)]), 1, "chargingProfileKind"),
        (prof(1, "EVProfile", 0, "Relative", [(0, 16)]), 1, "chargingProfilePurpose"),
    ]
    for p, conn, word in bad:
        try:
            c(p, conn)
        except chargeprofile.ProfileError as e:
            assert word in str(e), (word, str(e))
        else:
            raise AssertionError("accepted: %r" % (p,))
    p = prof(1, "TxDefaultProfile", 0, "Absolute", [(0, 16)], start=T0)
    p["validTo"] = "tomorrow"
    try:
        c(p)
    except chargeprofile.ProfileError as e:
        assert "validTo" in str(e), str(e)
    else:
        raise AssertionError("accepted a bad validTo")


def check_composite__limit_at_allocates_little():
    # the limit is worked out again at each change of a schedule: a few small objects, not a
    # storm (the W conversion's float, the result tuple)
    ps = [DAILY, HOLIDAY, CPMAX_20, WEEKLY]
    gc.collect()
    try:
        before = gc.mem_alloc()
    except AttributeError:   # CPython
        return
    for i in range(100):
        composite.limit_at(ps, T0 + i * 997, 1, None, None, 230, 1, 32)
    grown = gc.mem_alloc() - before
    assert grown < 100 * 200, grown   # 160 bytes a call on the 64-bit unix port (4 profiles)


CHECKS = checkrun.checks(globals())

if __name__ == "__main__":
    checkrun.main(CHECKS)
