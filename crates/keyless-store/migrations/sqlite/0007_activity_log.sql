-- The activity log: one row per management write (ARM's control-plane audit),
-- refusals included. `body` is the event as served (JSON); the columns are what
-- queries select on.
CREATE TABLE activity_log (
    id              TEXT PRIMARY KEY,
    time            INTEGER NOT NULL,
    tenant_id       TEXT,
    subscription_id TEXT COLLATE NOCASE,
    body            TEXT NOT NULL
);

CREATE INDEX activity_log_by_subscription ON activity_log (subscription_id, time);
CREATE INDEX activity_log_by_tenant ON activity_log (tenant_id, time);
