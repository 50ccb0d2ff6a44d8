-- Several gateway processes on one database (issue 15): PostgreSQL only (postgresql/0003_cluster.sql
-- says what each table is). A SQLite database has one gateway process and one writer: reading ids
-- commit in order there, so the uplinks' id cursors stay as they are (no readings.xid, no
-- triggers). The tables are made here too, so that both back ends name the same tables, but only
-- as names: nothing reads or writes them on SQLite (and their text stays small: the schema lives
-- in the database's first page).
CREATE TABLE cluster_nodes (node TEXT);
CREATE TABLE cluster_sessions (station TEXT);
CREATE TABLE cluster_leases (work TEXT);
CREATE TABLE cluster_calls (id TEXT);
