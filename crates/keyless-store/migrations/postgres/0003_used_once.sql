-- Things presented once only until they expire (a client assertion's `jti`),
-- by digest, for every server sharing the database: a second presentation
-- before `expires_at`, to any server, is refused.
CREATE TABLE used_once (
    key        TEXT COLLATE "C" PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_once_expiry ON used_once(expires_at);
