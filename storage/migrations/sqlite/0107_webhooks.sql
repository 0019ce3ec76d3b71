-- Webhook endpoints of maintenance firms and their delivery outbox (docs/storage.md,
-- "Webhooks"; docs/api.md, "Webhooks"). AUTOINCREMENT: an endpoint's or delivery's id is
-- never given twice, so a removed endpoint's id never names a new one.
CREATE TABLE webhook_endpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The firm (register 维保单位编码) whose feed rows go to this endpoint.
    firm       TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    -- whsec_<base64>: what signs the deliveries (Standard Webhooks).
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    -- The user id, or cli:<login> for `gridwatch webhooks add`.
    created_by TEXT    NOT NULL,
    -- Feed rows up to this id are in webhook_deliveries or not the firm's: where the
    -- next read of the feed starts. A new endpoint starts at the newest feed row.
    feed_cursor INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_firm ON webhook_endpoints (firm);

-- One row per feed row to deliver to an endpoint, from the read of the feed to its
-- delivery or parking: the outbox and the delivery log at once.
CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id  INTEGER NOT NULL,
    -- The feed row: its id is the webhook-id header, the same on every attempt.
    feed_id      INTEGER NOT NULL,
    event        TEXT    NOT NULL,
    -- The feed row's body, copied: retention of the feed never takes a parked delivery.
    body         TEXT    NOT NULL,
    -- pending, delivered or parked.
    status       TEXT    NOT NULL,
    -- Attempts since it was queued (or redriven).
    attempts     INTEGER NOT NULL,
    -- When it was queued or redriven, ms: the retry budget's age counts from here.
    queued_at    INTEGER NOT NULL,
    -- When a pending delivery is tried next, ms.
    next_at      INTEGER NOT NULL,
    last_at      INTEGER,
    -- The HTTP status of the last attempt (NULL: no answer, see last_error).
    last_status  INTEGER,
    last_error   TEXT,
    UNIQUE (endpoint_id, feed_id)
);
-- The worker's question: an endpoint's oldest pending delivery.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, status, feed_id);
