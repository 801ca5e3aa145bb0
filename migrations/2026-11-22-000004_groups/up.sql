-- Groups, their members (some of them admins), group messages, and membership events.
CREATE TABLE groups (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9_]{3,32}$'),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE group_members (
    group_id  BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_admin  BOOLEAN NOT NULL DEFAULT false,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

ALTER TABLE messages ADD COLUMN group_id BIGINT REFERENCES groups (id) ON DELETE CASCADE;
ALTER TABLE messages ADD CONSTRAINT messages_one_destination
    CHECK ((recipient_id IS NULL) <> (group_id IS NULL));
CREATE INDEX messages_group ON messages (group_id, id) WHERE group_id IS NOT NULL;

-- A membership event ({type, group, username, by}) where message_id is null.
ALTER TABLE inbox_events ADD COLUMN group_event JSONB;
ALTER TABLE inbox_events ADD CONSTRAINT inbox_events_one_kind
    CHECK ((message_id IS NULL) <> (group_event IS NULL));
