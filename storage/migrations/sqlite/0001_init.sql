-- Telemetry: one row per reading. (device_id, seq, ts) is the idempotency key on
-- every backend (TimescaleDB requires the time column in unique keys), ts being
-- the device's own time in ms since the Unix epoch.
CREATE TABLE readings (
    device_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    gateway     TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq, ts)
) WITHOUT ROWID;
CREATE INDEX readings_device_ts ON readings (device_id, ts);

-- Latest known state per device, for the dashboard and the alert engine.
CREATE TABLE devices (
    device_id  TEXT PRIMARY KEY,
    kind       TEXT    NOT NULL,
    gateway    TEXT    NOT NULL,
    last_seq   INTEGER NOT NULL,
    last_ts    INTEGER NOT NULL,
    last_body  TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    raised_at  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    cleared_at INTEGER,
    detail     TEXT    NOT NULL DEFAULT ''
);
-- One problem, one alert: at most one open alert per device and kind.
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id, kind) WHERE state <> 'cleared';

-- Refused input, kept for operators: never silently dropped.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    payload     BLOB    NOT NULL
);
CREATE INDEX quarantine_reason ON quarantine (reason);
