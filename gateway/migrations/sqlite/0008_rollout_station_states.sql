-- A rollout's stations by state, in wave order: each step of a running rollout reads its wave (the
-- stations updating) and its failed ones, and a new wave its first waiting ones
-- (store.rollout_judged, store.rollout_waiting), without reading every station of the rollout.
CREATE INDEX rollout_stations_state ON rollout_stations(rollout, state, position);
