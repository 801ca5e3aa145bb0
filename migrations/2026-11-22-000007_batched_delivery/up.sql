-- What a message costs the database, cut down; a 1,000-member group message writes a
-- key and an inbox event per member, and every one-to-one message a few rows.

-- Per-row foreign key checks on the two tables a message fans out to cost more than the
-- inserts themselves. Their rows are only ever written together with the message, for
-- users the same transaction has just read, so the checks go; deleting a message or a
-- user still takes its keys and events with it, by statement-level triggers.
ALTER TABLE message_keys
    DROP CONSTRAINT message_keys_message_id_fkey,
    DROP CONSTRAINT message_keys_user_id_fkey;
ALTER TABLE inbox_events
    DROP CONSTRAINT inbox_events_message_id_fkey,
    DROP CONSTRAINT inbox_events_user_id_fkey;

CREATE FUNCTION fastchat_forget_messages() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_keys k USING gone WHERE k.message_id = gone.id;
    DELETE FROM inbox_events e USING gone WHERE e.message_id = gone.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_forget AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION fastchat_forget_messages();

CREATE FUNCTION fastchat_forget_users() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_keys k USING gone WHERE k.user_id = gone.id;
    DELETE FROM inbox_events e USING gone WHERE e.user_id = gone.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_forget AFTER DELETE ON users
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION fastchat_forget_users();

-- The queries every message runs many times over, as functions: PL/pgSQL keeps their
-- plans for the life of a connection, where a plain statement is planned on every call
-- (and planning the inbox read's six-way join costs more than running it).
-- Appends events to inboxes: user_ids[i] gets message_ids[i] or group_events[i], in
-- array order. The inbox rows are locked in user id order (no deadlocks) and stay
-- locked until commit, so each inbox's seq follows commit order with no gaps.
CREATE FUNCTION fastchat_deliver(user_ids BIGINT[], message_ids BIGINT[], group_events JSONB[])
RETURNS VOID LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    PERFORM 1 FROM inboxes WHERE inboxes.user_id = ANY (user_ids)
      ORDER BY inboxes.user_id FOR UPDATE;
    WITH wanted AS (
        SELECT d.user_id, d.message_id, d.group_event,
               row_number() OVER (PARTITION BY d.user_id ORDER BY d.ord) AS nth,
               count(*) OVER (PARTITION BY d.user_id) AS n
          FROM unnest(user_ids, message_ids, group_events)
               WITH ORDINALITY AS d(user_id, message_id, group_event, ord)
    ), bumped AS (
        UPDATE inboxes i SET last_seq = i.last_seq + c.n
          FROM (SELECT DISTINCT w.user_id, w.n FROM wanted w) c
         WHERE i.user_id = c.user_id
        RETURNING i.user_id, i.last_seq
    )
    INSERT INTO inbox_events (user_id, seq, message_id, group_event)
    SELECT w.user_id, b.last_seq - w.n + w.nth, w.message_id, w.group_event
      FROM wanted w JOIN bumped b ON b.user_id = w.user_id;
END
$$;

-- Reads many inboxes at once: for request i, up to limits[i] events of user_ids[i]
-- after seq afters[i], with each message as that reader sees it (only its own key).
-- Each request touches a handful of rows, so the plan is index lookups in nested loops
-- whatever the statistics say: a plan kept for a connection's life must not turn into
-- a scan of a table that has grown since it was made. The key, names and group come
-- from subqueries, each an index lookup on its full key.
CREATE FUNCTION fastchat_read_inboxes(user_ids BIGINT[], afters BIGINT[], limits BIGINT[])
RETURNS TABLE (
    request BIGINT, seq BIGINT, message_id BIGINT, group_event JSONB,
    sender TEXT, recipient TEXT, group_name TEXT, kind TEXT, client_id UUID,
    sent_at TIMESTAMPTZ, nonce TEXT, ciphertext TEXT, sig TEXT, attachments TEXT[],
    wrapped_key TEXT
) LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT r.request, e.seq, e.message_id, e.group_event,
           (SELECT u.username FROM users u WHERE u.id = m.sender_id),
           (SELECT u.username FROM users u WHERE u.id = m.recipient_id),
           (SELECT g.name FROM groups g WHERE g.id = m.group_id),
           m.kind, m.client_id, m.sent_at, m.nonce, m.ciphertext, m.sig, m.attachments,
           (SELECT k.wrapped_key FROM message_keys k
             WHERE k.message_id = e.message_id AND k.user_id = r.user_id)
      FROM unnest(user_ids, afters, limits) WITH ORDINALITY AS r(user_id, after, lim, request)
     CROSS JOIN LATERAL (
           SELECT ie.seq, ie.message_id, ie.group_event FROM inbox_events ie
            WHERE ie.user_id = r.user_id AND ie.seq > r.after
            ORDER BY ie.seq LIMIT r.lim) e
      LEFT JOIN messages m ON m.id = e.message_id
     ORDER BY r.request, e.seq;
END
$$;

-- The live sessions among these token hashes, with their users: every request asks.
CREATE FUNCTION fastchat_find_sessions(hashes BYTEA[])
RETURNS TABLE (token_hash BYTEA, user_id BIGINT, username TEXT) LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.token_hash, u.id, u.username
      FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.token_hash = ANY (hashes) AND s.expires_at > now();
END
$$;
