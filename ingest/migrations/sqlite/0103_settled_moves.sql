-- Moves of readings into readings_settled count themselves here, so that a
-- writer learns when another process moved readings it has not seen
-- (ingest/src/store/settled_tops.rs).
INSERT INTO store_meta (key, value) VALUES ('settled_moves', 0);
