-- gridwatch on PostgreSQL: telemetry, latest state per device, quarantine.
-- The domain tables (alerts, cases, ...) come in 0100 and later.

-- Telemetry: one row per reading. The idempotency key is (device_id, seq, ts) on
-- every backend, ts being the device's own time (TimescaleDB requires the time
-- column in every unique key). The key's columns are ordered (device_id, ts, seq)
-- so the same index also serves "history of one device between two times": one
-- index to maintain on the hot write path instead of two.
--
-- How the table is laid out depends on the server, decided by the store at
-- start-up (see docs/storage.md) and passed in the session setting
-- gridwatch.readings_layout:
--   'hypertable'  a plain table, turned into a TimescaleDB hypertable right after
--                 the migrations (store/timescale.rs);
--   otherwise     native declarative partitioning by range of ts, with a default
--                 partition for rows outside the daily partitions that the store
--                 keeps created ahead (store/partitions.rs).
DO $$
DECLARE
    columns CONSTANT text := '
        device_id   text        NOT NULL,
        seq         bigint      NOT NULL,
        ts          timestamptz NOT NULL,
        kind        text        NOT NULL,
        gateway     text        NOT NULL,
        -- The whole reading as tagged JSON ({"kind":..,"v":1,"device":..,..,"body":{..}}),
        -- serialised by ingest from the validated message, as on SQLite. text rather
        -- than jsonb because COPY into jsonb parses every row again (measured ~1.5x
        -- slower); cast with body::jsonb in queries.
        body        text        NOT NULL,
        -- Arrival on the ingest clock, ms since the Unix epoch (as on SQLite, so the
        -- same SQL serves both backends).
        received_at bigint      NOT NULL DEFAULT (extract(epoch FROM now()) * 1000)::bigint,
        PRIMARY KEY (device_id, ts, seq)';
BEGIN
    IF coalesce(current_setting('gridwatch.readings_layout', true), '') = 'hypertable' THEN
        EXECUTE 'CREATE TABLE readings (' || columns || ')';
    ELSE
        EXECUTE 'CREATE TABLE readings (' || columns || ') PARTITION BY RANGE (ts)';
        CREATE TABLE readings_default PARTITION OF readings DEFAULT;
    END IF;
END
$$;

-- Latest known state per device, for the dashboard and the alert engine. Updated
-- by every batch, so pages keep room for HOT updates (no indexed column changes).
-- Times are ms since the Unix epoch, as on SQLite.
CREATE TABLE devices (
    device_id  text   PRIMARY KEY,
    kind       text   NOT NULL,
    gateway    text   NOT NULL,
    last_seq   bigint NOT NULL,
    last_ts    bigint NOT NULL,
    last_body  text   NOT NULL,
    updated_at bigint NOT NULL
) WITH (fillfactor = 70);

-- Refused input, kept for operators: never silently dropped.
CREATE TABLE quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at bigint NOT NULL,
    source      text   NOT NULL,
    reason      text   NOT NULL,
    detail      text   NOT NULL,
    payload     bytea  NOT NULL
);
CREATE INDEX quarantine_reason ON quarantine (reason);
