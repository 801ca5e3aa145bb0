-- How far each user has read each conversation, shared by all of the user's devices.
-- A conversation is a peer (group_id 0) or a group (peer_id 0). The mark is the
-- reader's own inbox seq of the message read up to, so that "unread" follows commit
-- order (a message id does not); message_id is kept to answer clients with.
CREATE TABLE read_marks (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer_id    BIGINT NOT NULL DEFAULT 0,
    group_id   BIGINT NOT NULL DEFAULT 0,
    seq        BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    read_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, peer_id, group_id),
    CHECK ((peer_id = 0) <> (group_id = 0))
);
