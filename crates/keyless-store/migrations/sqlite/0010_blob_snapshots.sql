-- Snapshots: read-only copies of a blob at a moment, named by that moment
-- (`snapshot`, as Azure writes it). Each holds its own bytes (a file of its own, or
-- inline), so deleting a blob or a snapshot never touches another's.
CREATE TABLE blob_snapshots (
    account             TEXT NOT NULL,
    container           TEXT NOT NULL,
    name                TEXT NOT NULL,
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
    PRIMARY KEY (account, container, name, snapshot),
    FOREIGN KEY (account, container) REFERENCES containers(account, name) ON DELETE CASCADE
);
