-- Invariant 4 (docs/architecture.md), held by the database: at most one open
-- alert per device and kind (see ../sqlite/0104_alerts_one_open.sql, which
-- restores the index SQLite lost in 0100_domain.sql; PostgreSQL never had it).
--
-- A database may already hold several open alerts for one device and kind:
-- `gridwatch equipment import` did not save the alert engine's state, so every
-- further import (and the next `gridwatch ingest`) knew nothing of the due-date
-- alerts already open and raised them again. Before the index can exist, all but
-- the newest of each such set are closed: the newest is the last one raised, the
-- only one a saved engine state could still hold. Nothing cleared the older ones
-- and nothing ever would, so they are marked cleared as of their last update
-- (cleared_at = updated_at), revision unchanged, and no event is added to
-- alert_events: the feed never said they ended. raised_at cannot tie within a
-- device and kind (UNIQUE (device_id, kind, raised_at)).
UPDATE alerts
SET state = 'cleared', cleared_at = updated_at
WHERE state <> 'cleared'
  AND EXISTS (
      SELECT 1 FROM alerts AS newer
      WHERE newer.device_id = alerts.device_id
        AND newer.kind = alerts.kind
        AND newer.state <> 'cleared'
        AND newer.raised_at > alerts.raised_at
  );

-- state is 'raised' | 'acknowledged' | 'cleared': open means not cleared.
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id, kind) WHERE state <> 'cleared';
