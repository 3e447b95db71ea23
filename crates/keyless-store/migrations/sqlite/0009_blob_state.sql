-- Blob and container state beyond bytes and HTTP properties, as JSON: the blob's
-- type (block, page, append), its index tags, lease, access tier, page ranges and
-- sequence number, append seal; a container's lease, public access level and
-- stored access policies. NULL is the state of a fresh block blob or container.
ALTER TABLE blobs ADD COLUMN state TEXT;
ALTER TABLE containers ADD COLUMN state TEXT;
