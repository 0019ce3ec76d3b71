-- New readings go first into readings_recent, whose only index is time-first
-- (the device's clock only grows, so a batch appends to it), and are moved into
-- readings_settled, keyed by device, many batches at a time in key order
-- (ingest/src/store/sqlite.rs, docs/storage.md). Inserted straight into the
-- device-ordered key, every batch from thousands of devices dirtied a page of
-- it per device, written to the WAL and checkpointed at every commit.
-- `readings` is both tables; a key is in one of them, never in both.
ALTER TABLE readings RENAME TO readings_settled;
CREATE TABLE readings_recent (
    device_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    gateway     TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX readings_recent_key ON readings_recent (device_id, ts, seq);
CREATE VIEW readings AS
    SELECT device_id, seq, ts, kind, gateway, body, received_at FROM readings_settled
    UNION ALL
    SELECT device_id, seq, ts, kind, gateway, body, received_at FROM readings_recent;
