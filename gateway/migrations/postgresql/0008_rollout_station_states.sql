-- As sqlite/0008_rollout_station_states.sql, in PostgreSQL's words.
CREATE INDEX rollout_stations_state ON rollout_stations(rollout, state, position);
