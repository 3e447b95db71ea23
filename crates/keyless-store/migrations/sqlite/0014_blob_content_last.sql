-- A small blob's bytes move to the end of its row. SQLite keeps a row's columns
-- in order and spills what does not fit a page into a chain of overflow pages;
-- with the bytes in the middle, reading `is_dir`, `acl` or `state` of a blob
-- walked that chain, so a listing read every small blob's bytes. At the end,
-- a row's other columns are read without touching them.
CREATE TABLE blobs_reordered (
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
    is_dir              INTEGER NOT NULL DEFAULT 0,
    acl                 TEXT,
    state               TEXT,
    content             BLOB,
    PRIMARY KEY (account, container, name),
    FOREIGN KEY (account, container) REFERENCES containers(account, name) ON DELETE CASCADE
);
INSERT INTO blobs_reordered (account, container, name, etag, created_at, last_modified, size, file_id,
    content_type, content_encoding, content_language, content_disposition, cache_control, content_md5,
    metadata, committed_blocks, is_dir, acl, state, content)
SELECT account, container, name, etag, created_at, last_modified, size, file_id,
    content_type, content_encoding, content_language, content_disposition, cache_control, content_md5,
    metadata, committed_blocks, is_dir, acl, state, content
FROM blobs;
DROP TABLE blobs;
ALTER TABLE blobs_reordered RENAME TO blobs;
