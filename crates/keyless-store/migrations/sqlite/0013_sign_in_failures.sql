-- Wrong passwords counted per user name and per address (each by a keyed
-- digest, never the name or address itself): `count` failures since `since`,
-- and the key is locked until `locked_until`.
CREATE TABLE sign_in_failures (
    key          TEXT PRIMARY KEY,
    since        INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    locked_until INTEGER NOT NULL
);
