-- As sqlite/0007_open_transactions.sql, in PostgreSQL's words.
CREATE INDEX transactions_open ON transactions(id) WHERE stop_ts IS NULL;
