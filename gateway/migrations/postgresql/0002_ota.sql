-- Over-the-air updates, as sqlite/0002_ota.sql in PostgreSQL's words (BIGINT, COLLATE "C").
CREATE TABLE releases (
    version TEXT COLLATE "C" PRIMARY KEY, board TEXT COLLATE "C", mpy BIGINT, key_id TEXT COLLATE "C",
    created TEXT COLLATE "C", files BIGINT NOT NULL, size BIGINT NOT NULL, manifest_sha256 TEXT NOT NULL,
    added_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE ota_status (
    seq BIGINT PRIMARY KEY, station TEXT COLLATE "C" NOT NULL, kind TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL, ts TEXT COLLATE "C" NOT NULL
);
CREATE INDEX ota_status_station ON ota_status(station, kind, seq);
CREATE TABLE rollouts (
    id BIGINT PRIMARY KEY, version TEXT COLLATE "C" NOT NULL, wave BIGINT NOT NULL, max_failures BIGINT NOT NULL,
    timeout BIGINT NOT NULL, state TEXT COLLATE "C" NOT NULL, reason TEXT, created TEXT COLLATE "C" NOT NULL,
    finished TEXT COLLATE "C"
);
CREATE TABLE rollout_stations (
    rollout BIGINT NOT NULL, station TEXT COLLATE "C" NOT NULL, position BIGINT NOT NULL,
    state TEXT COLLATE "C" NOT NULL, detail TEXT, since_seq BIGINT, started TEXT COLLATE "C",
    finished TEXT COLLATE "C",
    PRIMARY KEY (rollout, station)
);
