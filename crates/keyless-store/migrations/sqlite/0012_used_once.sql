-- Things presented once only until they expire (a client assertion's `jti`),
-- by digest: a second presentation before `expires_at` is refused.
CREATE TABLE used_once (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX used_once_expiry ON used_once(expires_at);
