-- The feed: one row per alert event, case audit record, escalation and firm response
-- as domain::save stores it, in commit order (docs/storage.md, "The feed"); what
-- GET /api/feed serves. AUTOINCREMENT: an id is never given twice, also after retention
-- deleted the newest rows, so a subscriber's Last-Event-ID stays a place to resume.
CREATE TABLE feed (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- alert.raised, case.step, ... (docs/api.md, "Live feed").
    event     TEXT    NOT NULL,
    -- The event's own time, ms since the epoch: what retention prunes by.
    at        INTEGER NOT NULL,
    -- The device (or gateway) it is about; NULL for a case about a using unit.
    device_id TEXT,
    -- The walls: the grid and firm of the device or case when the row was written.
    -- NULL grid: outside the register, shown in open mode only.
    grid      TEXT,
    firm      TEXT,
    -- The JSON the feed sends, without the id.
    body      TEXT    NOT NULL
);
CREATE INDEX feed_at ON feed (at);
