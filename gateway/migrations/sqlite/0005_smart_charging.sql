-- Smart Charging at the gateway (issue 13, docs/gateway.md "Charging profiles, load balancing
-- and eco mode"). composite_schedules: the last GetCompositeSchedule answer of each station and
-- connector (schedule: OCPP's chargingSchedule as JSON). lb_groups: load-balancing groups, a
-- per-phase current limit in A over `phases` phases; eco (JSON, NULL for none): the MQTT topic,
-- JSON path, floor, ramp and timeout the limit follows, `limit_a` being then the safe constant it
-- falls back to. lb_members: a station's connector in at most one group, with its priority.
CREATE TABLE composite_schedules (
    station TEXT NOT NULL, connector INTEGER NOT NULL, status TEXT NOT NULL, schedule_start TEXT,
    schedule TEXT, duration INTEGER NOT NULL, unit TEXT, ts TEXT NOT NULL,
    PRIMARY KEY (station, connector)
);
CREATE TABLE lb_groups (
    name TEXT PRIMARY KEY, limit_a REAL NOT NULL, phases INTEGER NOT NULL, eco TEXT, created TEXT NOT NULL
);
CREATE TABLE lb_members (
    grp TEXT NOT NULL, station TEXT NOT NULL, connector INTEGER NOT NULL, priority INTEGER NOT NULL,
    PRIMARY KEY (station, connector)
);
CREATE INDEX lb_members_grp ON lb_members(grp);
