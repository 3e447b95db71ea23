-- Hierarchical namespace (ADLS Gen2): directories are rows of their own, and
-- every path of an HNS account (and the root directory, on its container) carries
-- its POSIX access control as JSON.
ALTER TABLE blobs ADD COLUMN is_dir INTEGER NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN acl TEXT;
ALTER TABLE containers ADD COLUMN acl TEXT;
