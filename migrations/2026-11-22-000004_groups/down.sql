ALTER TABLE inbox_events DROP CONSTRAINT inbox_events_one_kind;
ALTER TABLE inbox_events DROP COLUMN group_event;
ALTER TABLE messages DROP CONSTRAINT messages_one_destination;
ALTER TABLE messages DROP COLUMN group_id;
DROP TABLE group_members;
DROP TABLE groups;
