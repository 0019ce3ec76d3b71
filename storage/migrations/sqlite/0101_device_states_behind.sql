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

-- readings rebuilt as a rowid table in arrival order (new rows are appended) with
-- one unique index, (device_id, ts, seq): the idempotency key (the same columns
-- as (device_id, seq, ts)) and the index of "history of one device between two
-- times". It replaces the WITHOUT ROWID table keyed by device and its second
-- index (device_id, ts): two device-ordered B-trees, one of them holding the
-- ~250-byte rows, where a batch from thousands of devices dirtied a page per
-- reading in each (docs/storage.md).
CREATE TABLE readings_by_arrival (
    device_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    gateway     TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);
INSERT INTO readings_by_arrival (device_id, seq, ts, kind, gateway, body, received_at)
SELECT device_id, seq, ts, kind, gateway, body, received_at FROM readings ORDER BY received_at, device_id, ts, seq;
DROP TABLE readings;
ALTER TABLE readings_by_arrival RENAME TO readings;
CREATE UNIQUE INDEX readings_key ON readings (device_id, ts, seq);
CREATE INDEX readings_received_at ON readings (received_at);
