-- Encrypted attachments. The server holds ciphertext only; the key travels inside the
-- message that lists the blob. Uploads no message refers to are deleted after a while.
CREATE TABLE blobs (
    id          UUID PRIMARY KEY,
    uploader_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    size        BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Random bytes do not compress: store them as they are.
ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX blobs_created_at ON blobs (created_at);

-- Which messages list which blobs: a blob may be read by whoever holds a key to one.
CREATE TABLE message_attachments (
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    blob_id    UUID NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
    PRIMARY KEY (message_id, blob_id)
);
CREATE INDEX message_attachments_blob ON message_attachments (blob_id);
