-- Wrong passwords counted per user name and per address (each by a keyed
-- digest, never the name or address itself) for every server sharing the
-- database: `count` failures since `since`, and the key is locked until
-- `locked_until`.
CREATE TABLE sign_in_failures (
    key          TEXT COLLATE "C" PRIMARY KEY,
    since        BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
