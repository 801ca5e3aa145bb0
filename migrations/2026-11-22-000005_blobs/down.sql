DROP TABLE message_attachments;
DROP TABLE blobs;
