-- Webhook endpoints and their delivery outbox (see ../sqlite/0107_webhooks.sql).
CREATE TABLE webhook_endpoints (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    firm       TEXT   NOT NULL,
    url        TEXT   NOT NULL,
    secret     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    feed_cursor BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_firm ON webhook_endpoints (firm);

CREATE TABLE webhook_deliveries (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id  BIGINT NOT NULL,
    feed_id      BIGINT NOT NULL,
    event        TEXT   NOT NULL,
    body         TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    attempts     BIGINT NOT NULL,
    queued_at    BIGINT NOT NULL,
    next_at      BIGINT NOT NULL,
    last_at      BIGINT,
    last_status  BIGINT,
    last_error   TEXT,
    UNIQUE (endpoint_id, feed_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, status, feed_id);
