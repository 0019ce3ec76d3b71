-- The domain tables: alerts as the engine reports them, the engine's checkpoint,
-- the equipment register, and cases with their append-only audit record.

-- Replaces the walking skeleton's alerts table: one row per alert (an alert is
-- identified by device, kind and the device time it was raised), updated by its events.
DROP TABLE IF EXISTS alerts;
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    device_id       TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    raised_at       INTEGER NOT NULL,
    severity        TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    revision        INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    cleared_at      INTEGER,
    acknowledged_by TEXT,
    details         TEXT    NOT NULL,
    UNIQUE (device_id, kind, raised_at)
);
CREATE INDEX alerts_by_state ON alerts (state, raised_at);

-- Every event of every alert, idempotent on (device, kind, raised_at, revision): the feed.
CREATE TABLE alert_events (
    seq       INTEGER PRIMARY KEY,
    device_id TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    raised_at INTEGER NOT NULL,
    revision  INTEGER NOT NULL,
    change    TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    body      TEXT    NOT NULL,
    UNIQUE (device_id, kind, raised_at, revision)
);

-- The alert engine's state, checkpointed per device and gateway ("device/ID",
-- "gateway/ID", "engine" for the clock and due-date day).
CREATE TABLE engine_state (
    key  TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE register (
    key  TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE cases (
    id        INTEGER PRIMARY KEY,
    case_type TEXT    NOT NULL,
    grid      TEXT    NOT NULL,
    status    TEXT    NOT NULL,
    priority  TEXT    NOT NULL,
    opened_at INTEGER NOT NULL,
    body      TEXT    NOT NULL
);

-- The audit record: who did which step when, with what evidence. Append-only.
CREATE TABLE case_steps (
    case_id INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    step    TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    body    TEXT    NOT NULL,
    PRIMARY KEY (case_id, n)
);
CREATE TRIGGER case_steps_no_update BEFORE UPDATE ON case_steps
BEGIN SELECT RAISE(ABORT, 'case_steps is append-only'); END;
CREATE TRIGGER case_steps_no_delete BEFORE DELETE ON case_steps
BEGIN SELECT RAISE(ABORT, 'case_steps is append-only'); END;
