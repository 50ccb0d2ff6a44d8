-- Several gateway processes on one database (issue 15, docs/scale-out.md).
--
-- readings.xid: the id of the transaction that stored the row. Reading ids come from one
-- sequence, but with several writers they commit out of order (id 100 may commit after id 101),
-- so an uplink's cursor cannot be "the last id sent": it would step over 100. The uplinks walk
-- readings in (xid, id) order and only up to the oldest transaction still running
-- (pg_snapshot_xmin): no row can appear later below that line. Rows stored before this
-- migration have xid 0 (they come first, in id order).
ALTER TABLE readings ADD COLUMN xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE readings ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX readings_forward ON readings(xid, id);
CREATE INDEX readings_station_forward ON readings(station, xid, id);
ALTER TABLE outbox ADD COLUMN last_xid BIGINT NOT NULL DEFAULT 0;

-- the gateway processes: `pid` is the backend pid of each one's listening connection, which
-- PostgreSQL ends as soon as the process dies (a killed process's socket is closed by its kernel)
CREATE TABLE cluster_nodes (
    node TEXT COLLATE "C" PRIMARY KEY,
    pid INTEGER NOT NULL,
    started TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- where each station is connected now; gen orders two connections of one station (newer wins)
CREATE SEQUENCE cluster_gen;
CREATE TABLE cluster_sessions (
    station TEXT COLLATE "C" PRIMARY KEY,
    node TEXT COLLATE "C" NOT NULL,
    gen BIGINT NOT NULL,
    since TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- uplink work ('mqtt', 'thingspeak:0'..): one owner each, until `until` unless renewed;
-- inflight_*: the outbox key of the last row of the MQTT stream's batch being sent (what a
-- process that takes the stream over may send a second time)
CREATE TABLE cluster_leases (
    work TEXT COLLATE "C" PRIMARY KEY,
    node TEXT COLLATE "C",
    until TIMESTAMPTZ NOT NULL DEFAULT now(),
    inflight_xid BIGINT,
    inflight_id BIGINT
);
-- a command sent to one process for a station connected to another: its body and answer
-- (a NOTIFY carries only the id: its payload is limited to 8000 bytes)
CREATE TABLE cluster_calls (
    id TEXT COLLATE "C" PRIMARY KEY,
    station TEXT COLLATE "C" NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    origin TEXT COLLATE "C" NOT NULL,
    answer TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- a change of what every process keeps in memory about a station or an id tag is told to all
-- of them (the station's id or the tag only; each reads the row again)
CREATE FUNCTION picocharge_station_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('picocharge', json_build_object('k', 's', 's', OLD.id)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('picocharge', json_build_object('k', 's', 's', NEW.id)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER stations_changed AFTER INSERT OR DELETE OR UPDATE OF pw_hash, state, ts_channel, ts_key,
    ts_read_key, vendor, model, firmware, status, error_code ON stations
    FOR EACH ROW EXECUTE FUNCTION picocharge_station_changed();
CREATE FUNCTION picocharge_tag_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('picocharge', json_build_object('k', 't', 't', OLD.tag)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('picocharge', json_build_object('k', 't', 't', NEW.tag)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER id_tags_changed AFTER INSERT OR DELETE OR UPDATE ON id_tags
    FOR EACH ROW EXECUTE FUNCTION picocharge_tag_changed();
