-- Id tags, local lists and reservations (issue 14, docs/gateway.md "Id tags, local lists and
-- reservations"). Tables are added, the ones of 0001 left as they are: a tag's parent id tag is
-- in id_tag_parents (id_tags.expiry, of 0001, is its expiryDate, ISO 8601 UTC), and the transaction
-- started against a reservation is reservations.transaction_id.
-- id_tag_log: one row per change of the id-tag list (version increasing, given by the one writer):
-- a station's local list is brought up to date with the tags changed after the version it has.
-- local_lists: per station, whether the gateway keeps its local list (sync), the listVersion it
-- last sent it and the log version that list holds, the station's limit per SendLocalList and
-- the state of the last sync. reservations: ReserveNow sent by the gateway (ids given by it).
CREATE TABLE id_tag_parents (
    tag TEXT PRIMARY KEY, parent TEXT NOT NULL
);
CREATE TABLE id_tag_log (
    version INTEGER PRIMARY KEY, tag TEXT NOT NULL
);
CREATE INDEX id_tag_log_tag ON id_tag_log(tag, version);
CREATE TABLE local_lists (
    station TEXT PRIMARY KEY, sync INTEGER, list_version INTEGER, log_version INTEGER,
    max_length INTEGER, state TEXT, detail TEXT, updated TEXT
);
CREATE TABLE reservations (
    id INTEGER PRIMARY KEY, station TEXT NOT NULL, connector INTEGER NOT NULL, id_tag TEXT NOT NULL,
    parent TEXT, expiry TEXT NOT NULL, status TEXT NOT NULL, created TEXT NOT NULL,
    cancelled TEXT, cancel_status TEXT, transaction_id INTEGER
);
CREATE INDEX reservations_station ON reservations(station, id);
