-- As sqlite/0005_smart_charging.sql, in PostgreSQL's words.
CREATE TABLE composite_schedules (
    station TEXT COLLATE "C" NOT NULL, connector BIGINT NOT NULL, status TEXT COLLATE "C" NOT NULL,
    schedule_start TEXT COLLATE "C", schedule TEXT, duration BIGINT NOT NULL, unit TEXT COLLATE "C",
    ts TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (station, connector)
);
CREATE TABLE lb_groups (
    name TEXT COLLATE "C" PRIMARY KEY, limit_a DOUBLE PRECISION NOT NULL, phases INTEGER NOT NULL, eco TEXT,
    created TEXT COLLATE "C" NOT NULL
);
CREATE TABLE lb_members (
    grp TEXT COLLATE "C" NOT NULL, station TEXT COLLATE "C" NOT NULL, connector BIGINT NOT NULL,
    priority INTEGER NOT NULL,
    PRIMARY KEY (station, connector)
);
CREATE INDEX lb_members_grp ON lb_members(grp);
