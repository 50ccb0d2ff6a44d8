-- As sqlite/0004_idtags_reservations.sql, in PostgreSQL's words.
CREATE TABLE id_tag_parents (
    tag TEXT COLLATE "C" PRIMARY KEY, parent TEXT COLLATE "C" NOT NULL
);
CREATE TABLE id_tag_log (
    version BIGINT PRIMARY KEY, tag TEXT COLLATE "C" NOT NULL
);
CREATE INDEX id_tag_log_tag ON id_tag_log(tag, version);
CREATE TABLE local_lists (
    station TEXT COLLATE "C" PRIMARY KEY, sync INTEGER, list_version BIGINT, log_version BIGINT,
    max_length BIGINT, state TEXT COLLATE "C", detail TEXT, updated TEXT COLLATE "C"
);
CREATE TABLE reservations (
    id BIGINT PRIMARY KEY, station TEXT COLLATE "C" NOT NULL, connector BIGINT NOT NULL,
    id_tag TEXT COLLATE "C" NOT NULL, parent TEXT COLLATE "C", expiry TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL, created TEXT COLLATE "C" NOT NULL,
    cancelled TEXT COLLATE "C", cancel_status TEXT COLLATE "C", transaction_id BIGINT
);
CREATE INDEX reservations_station ON reservations(station, id);
