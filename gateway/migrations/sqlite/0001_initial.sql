-- The gateway's schema as it was before migrations (every table IF NOT EXISTS: a database made
-- by an older gateway already has them and opens unchanged). The reading-columns line of readings is one REAL
-- column per reading key of fields.READINGS.
CREATE TABLE IF NOT EXISTS stations (
    id TEXT PRIMARY KEY,
    pw_hash TEXT,
    state TEXT NOT NULL DEFAULT 'accepted',     -- accepted | pending | rejected
    ts_channel INTEGER,
    ts_key TEXT,
    ts_read_key TEXT,                           -- a private channel's Read API key (optional)
    vendor TEXT, model TEXT, firmware TEXT,
    status TEXT, error_code TEXT,
    last_seen TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    ts TEXT NOT NULL,
    {reading_columns},
    status TEXT,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_station ON readings(station, id);
CREATE TABLE IF NOT EXISTS status_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL, connector INTEGER, status TEXT, error_code TEXT, info TEXT, ts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS connections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL, peer TEXT, connected_at TEXT NOT NULL, disconnected_at TEXT, reason TEXT
);
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL, connector INTEGER, id_tag TEXT,
    meter_start INTEGER, start_ts TEXT, meter_stop INTEGER, stop_ts TEXT, reason TEXT
);
CREATE INDEX IF NOT EXISTS transactions_station ON transactions(station, connector);
CREATE TABLE IF NOT EXISTS id_tags (
    tag TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'Accepted', expiry TEXT
);
CREATE TABLE IF NOT EXISTS outbox (
    uplink TEXT NOT NULL, station TEXT NOT NULL, last_id INTEGER NOT NULL,
    PRIMARY KEY (uplink, station)
);
