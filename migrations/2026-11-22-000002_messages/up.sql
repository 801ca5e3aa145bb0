-- Messages (ciphertext only), the per-reader wrapped keys, and every user's inbox.

-- The last inbox seq handed out per user. A sender locks the recipients' rows (in user
-- id order) and bumps them in its own transaction, so each inbox's seq grows in commit
-- order with no gaps: a reader that has seen seq n has seen everything before n.
CREATE TABLE inboxes (
    user_id  BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_seq BIGINT NOT NULL DEFAULT 0
);
INSERT INTO inboxes (user_id) SELECT id FROM users;

CREATE TABLE messages (
    id         BIGSERIAL PRIMARY KEY,
    sender_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- One-to-one: the other user. (Groups arrive with their own column.)
    recipient_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
    client_id  UUID NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('text', 'image')),
    nonce      TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    sig        TEXT NOT NULL,
    attachments TEXT[] NOT NULL DEFAULT '{}',
    sent_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Both directions of a conversation share one index range.
    pair_low   BIGINT GENERATED ALWAYS AS (LEAST(sender_id, recipient_id)) STORED,
    pair_high  BIGINT GENERATED ALWAYS AS (GREATEST(sender_id, recipient_id)) STORED,
    -- A retry with the same client_id finds the message instead of storing it twice.
    UNIQUE (sender_id, client_id)
);
CREATE INDEX messages_conversation ON messages (pair_low, pair_high, id)
    WHERE recipient_id IS NOT NULL;

-- The message key wrapped for each member (sender included); a reader gets only its own.
CREATE TABLE message_keys (
    message_id  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    wrapped_key TEXT NOT NULL,
    PRIMARY KEY (message_id, user_id)
);

CREATE TABLE inbox_events (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    message_id BIGINT REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, seq)
);
