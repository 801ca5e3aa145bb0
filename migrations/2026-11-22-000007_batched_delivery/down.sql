DROP FUNCTION fastchat_find_sessions(BYTEA[]);
DROP FUNCTION fastchat_read_inboxes(BIGINT[], BIGINT[], BIGINT[]);
DROP FUNCTION fastchat_deliver(BIGINT[], BIGINT[], JSONB[]);
DROP TRIGGER users_forget ON users;
DROP FUNCTION fastchat_forget_users();
DROP TRIGGER messages_forget ON messages;
DROP FUNCTION fastchat_forget_messages();
ALTER TABLE inbox_events
    ADD CONSTRAINT inbox_events_message_id_fkey
        FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE,
    ADD CONSTRAINT inbox_events_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE message_keys
    ADD CONSTRAINT message_keys_message_id_fkey
        FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE,
    ADD CONSTRAINT message_keys_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
