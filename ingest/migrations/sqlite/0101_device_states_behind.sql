-- The latest state per device is written behind the readings, once a second
-- (ingest/src/store/latest.rs). store_meta remembers when it last was, and the
-- index on received_at finds the readings whose states a crash may have left
-- unwritten. received_at only grows, so its index is appended to, not scattered.
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO store_meta (key, value)
VALUES ('device_states_flushed_at', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
CREATE INDEX readings_received_at ON readings (received_at);
