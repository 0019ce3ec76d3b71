-- Moves of readings into readings_settled count themselves here, so that a
-- writer learns when another process moved readings it has not seen
-- (ingest/src/store/settled_tops.rs).
-- (A correction to 0102's header, which cannot change once applied: the key of
-- readings_recent is device-first, (device_id, ts, seq), as it is created there.)
INSERT INTO store_meta (key, value) VALUES ('settled_moves', 0);
