-- Besides snapshots, `blob_snapshots` now keeps a blob's previous versions (kind
-- 'version', named by their version id) and blobs deleted while the account keeps
-- deleted blobs (kind 'deleted', named by the time of deletion). A row deleted
-- under a retention policy says when (`deleted_at`) and when it goes for good
-- (`expires_at`); until then it is listed with `include=deleted` and restored by
-- Undelete Blob. The kind joins the key: a version and a snapshot may be named by
-- the same instant.
CREATE TABLE blob_retained (
    account             TEXT NOT NULL,
    container           TEXT NOT NULL,
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL DEFAULT 'snapshot',
    snapshot            TEXT NOT NULL,
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
    content             BLOB,
    is_dir              INTEGER NOT NULL DEFAULT 0,
    acl                 TEXT,
    state               TEXT,
    deleted_at          INTEGER,
    expires_at          INTEGER,
    PRIMARY KEY (account, container, name, kind, snapshot),
    FOREIGN KEY (account, container) REFERENCES containers(account, name) ON DELETE CASCADE
);
INSERT INTO blob_retained (account, container, name, kind, snapshot, etag, created_at, last_modified, size, file_id,
    content_type, content_encoding, content_language, content_disposition, cache_control, content_md5, metadata,
    committed_blocks, content, is_dir, acl, state)
SELECT account, container, name, 'snapshot', snapshot, etag, created_at, last_modified, size, file_id,
    content_type, content_encoding, content_language, content_disposition, cache_control, content_md5, metadata,
    committed_blocks, content, is_dir, acl, state
FROM blob_snapshots;
DROP TABLE blob_snapshots;
ALTER TABLE blob_retained RENAME TO blob_snapshots;
CREATE INDEX blob_snapshots_expiry ON blob_snapshots (expires_at) WHERE expires_at IS NOT NULL;

-- A container deleted while the account keeps deleted containers stays, with its
-- blobs, under a name no request can give (`$deleted/<name>/<version>`) until it
-- is restored or its retention ends.
ALTER TABLE containers ADD COLUMN deleted_at INTEGER;
ALTER TABLE containers ADD COLUMN expires_at INTEGER;
CREATE INDEX containers_expiry ON containers (expires_at) WHERE expires_at IS NOT NULL;
