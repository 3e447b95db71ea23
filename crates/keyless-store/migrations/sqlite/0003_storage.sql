-- Storage accounts, containers, blobs and uncommitted blocks. Bytes live in files
-- named by `file_id` under the data dir; these rows are the only references to them.
CREATE TABLE storage_accounts (
    name             TEXT PRIMARY KEY,
    id               TEXT NOT NULL,
    id_key           TEXT NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    subscription_id  TEXT NOT NULL,
    resource_group   TEXT NOT NULL COLLATE NOCASE,
    location         TEXT NOT NULL,
    hns              INTEGER NOT NULL,
    allow_shared_key INTEGER NOT NULL,
    body             TEXT NOT NULL,
    key1             BLOB NOT NULL,
    key2             BLOB NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX storage_accounts_group ON storage_accounts(subscription_id, resource_group);

CREATE TABLE containers (
    account       TEXT NOT NULL REFERENCES storage_accounts(name) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    etag          TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    metadata      TEXT NOT NULL,
    PRIMARY KEY (account, name)
);

CREATE TABLE blobs (
    account             TEXT NOT NULL,
    container           TEXT NOT NULL,
    name                TEXT NOT NULL,
    etag                TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    last_modified       INTEGER NOT NULL,
    size                INTEGER NOT NULL,
    file_id             TEXT NOT NULL,
    content_type        TEXT,
    content_encoding    TEXT,
    content_language    TEXT,
    content_disposition TEXT,
    cache_control       TEXT,
    content_md5         BLOB,
    metadata            TEXT NOT NULL,
    committed_blocks    TEXT NOT NULL,
    PRIMARY KEY (account, container, name),
    FOREIGN KEY (account, container) REFERENCES containers(account, name) ON DELETE CASCADE
);

CREATE TABLE blocks (
    account    TEXT NOT NULL,
    container  TEXT NOT NULL,
    blob       TEXT NOT NULL,
    block_id   TEXT NOT NULL,
    size       INTEGER NOT NULL,
    file_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account, container, blob, block_id),
    FOREIGN KEY (account, container) REFERENCES containers(account, name) ON DELETE CASCADE
);
CREATE INDEX blocks_age ON blocks(created_at);
