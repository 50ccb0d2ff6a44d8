-- As sqlite/0006_status_history_station.sql, in PostgreSQL's words.
CREATE INDEX status_history_station ON status_history(station, id);
