-- Small blobs keep their bytes in the row: one commit makes bytes and metadata
-- durable together. `file_id` is empty for them.
ALTER TABLE blobs ADD COLUMN content BLOB;
