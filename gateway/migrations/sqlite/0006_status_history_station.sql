-- A station's status history by station (GET /api/stations/<id>/status-history, which the
-- station page polls every 4 s): without it the newest 200 rows of one station were found by
-- scanning the whole table backwards (every station's StatusNotifications and events), ~40 ms
-- in the store's writer thread at 10,000 stations with 30 rows each, every write waiting behind it
-- (benchmarks/fleet_scale.py).
CREATE INDEX status_history_station ON status_history(station, id);
