-- The latest state per device is written behind the readings, once a second
-- (ingest/src/store/latest.rs). store_meta remembers when it last was, and the
-- BRIN index on received_at finds the readings whose states a crash may have
-- left unwritten. received_at follows the order rows arrive in, so a BRIN index
-- fits it and costs next to nothing on the write path.
CREATE TABLE store_meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO store_meta (key, value)
VALUES ('device_states_flushed_at', (extract(epoch FROM now()) * 1000)::bigint);
CREATE INDEX readings_received_at ON readings USING brin (received_at);
