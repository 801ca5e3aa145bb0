DROP TABLE inbox_events;
DROP TABLE message_keys;
DROP TABLE messages;
DROP TABLE inboxes;
