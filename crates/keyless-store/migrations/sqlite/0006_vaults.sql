-- Key vaults and their secrets. A secret version keeps its value sealed under
-- its own data key (`sealed_value`) and the data key sealed under the master key
-- (`wrapped_key`); nothing here is readable without the master key.
CREATE TABLE vaults (
    name            TEXT PRIMARY KEY,
    id              TEXT NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    subscription_id TEXT NOT NULL,
    resource_group  TEXT NOT NULL COLLATE NOCASE,
    location        TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    deleted_at      INTEGER
);

CREATE TABLE secrets (
    vault        TEXT NOT NULL REFERENCES vaults(name) ON DELETE CASCADE,
    name         TEXT NOT NULL COLLATE NOCASE,
    version      TEXT NOT NULL,
    created      INTEGER NOT NULL,
    updated      INTEGER NOT NULL,
    enabled      INTEGER NOT NULL,
    not_before   INTEGER,
    expires      INTEGER,
    content_type TEXT,
    tags         TEXT NOT NULL,
    wrapped_key  BLOB NOT NULL,
    sealed_value BLOB NOT NULL,
    PRIMARY KEY (vault, name, version)
);
CREATE INDEX secrets_by_time ON secrets(vault, name, created);

-- Soft-deleted secrets: all their versions stay in `secrets` until purged.
CREATE TABLE deleted_secrets (
    vault           TEXT NOT NULL REFERENCES vaults(name) ON DELETE CASCADE,
    name            TEXT NOT NULL COLLATE NOCASE,
    deleted_at      INTEGER NOT NULL,
    scheduled_purge INTEGER NOT NULL,
    PRIMARY KEY (vault, name)
);
