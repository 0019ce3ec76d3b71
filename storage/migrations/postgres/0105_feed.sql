-- The feed (see ../sqlite/0106_feed.sql). Ids come from the identity's sequence (cache 1):
-- never given twice; domain::save takes a transaction-level advisory lock before its
-- first feed row, so ids also commit in order (docs/storage.md, "The feed").
CREATE TABLE feed (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event     TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    device_id TEXT,
    grid      TEXT,
    firm      TEXT,
    body      TEXT   NOT NULL
);
CREATE INDEX feed_at ON feed (at);
