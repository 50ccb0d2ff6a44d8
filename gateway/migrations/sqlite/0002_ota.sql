-- Over-the-air updates (issue 12, docs/ota.md): the releases the gateway serves, each station's
-- firmware and diagnostics statuses in the order they came (seq), and staged rollouts with their
-- stations in wave order. Ids and sequence numbers are given by the one writer (MAX + 1).
CREATE TABLE releases (
    version TEXT PRIMARY KEY, board TEXT, mpy INTEGER, key_id TEXT, created TEXT,
    files INTEGER NOT NULL, size INTEGER NOT NULL, manifest_sha256 TEXT NOT NULL, added_at TEXT NOT NULL
);
CREATE TABLE ota_status (
    seq INTEGER PRIMARY KEY, station TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, ts TEXT NOT NULL
);
CREATE INDEX ota_status_station ON ota_status(station, kind, seq);
CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY, version TEXT NOT NULL, wave INTEGER NOT NULL, max_failures INTEGER NOT NULL,
    timeout INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT, created TEXT NOT NULL, finished TEXT
);
CREATE TABLE rollout_stations (
    rollout INTEGER NOT NULL, station TEXT NOT NULL, position INTEGER NOT NULL, state TEXT NOT NULL,
    detail TEXT, since_seq INTEGER, started TEXT, finished TEXT,
    PRIMARY KEY (rollout, station)
);
