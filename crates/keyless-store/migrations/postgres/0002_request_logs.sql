-- The storage and vault logs of every server sharing the database: one row per
-- request, the record as served (`body`, JSON) and the columns queries select on.
-- `seq` orders them as they were written.
CREATE TABLE request_logs (
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    log                 TEXT COLLATE "C" NOT NULL,
    at_us               BIGINT NOT NULL,
    account             TEXT COLLATE "C" NOT NULL,
    requester_object_id TEXT COLLATE "C",
    requester_upn       TEXT COLLATE "C",
    path                TEXT COLLATE "C" NOT NULL,
    status              INTEGER NOT NULL,
    body                TEXT NOT NULL
);
CREATE INDEX request_logs_by_account ON request_logs (log, account, seq);
