-- A group message reaches every member's inbox, and a batch of reads after it returns
-- the same message once per reader. Look the message (and its sender's and group's
-- names) up once a batch: only the first row of each message carries it, in the
-- order rows are returned; the rows after it carry just the event and the reader's
-- key, and the server fills in the rest from the first.
CREATE OR REPLACE FUNCTION fastchat_read_inboxes(user_ids BIGINT[], afters BIGINT[], limits BIGINT[])
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
    WITH ev AS MATERIALIZED (
        SELECT r.request, r.user_id, e.seq, e.message_id, e.group_event,
               row_number() OVER (PARTITION BY e.message_id ORDER BY r.request, e.seq) AS nth
          FROM unnest(user_ids, afters, limits) WITH ORDINALITY AS r(user_id, after, lim, request)
         CROSS JOIN LATERAL (
               SELECT ie.seq, ie.message_id, ie.group_event FROM inbox_events ie
                WHERE ie.user_id = r.user_id AND ie.seq > r.after
                ORDER BY ie.seq LIMIT r.lim) e
    )
    SELECT ev.request, ev.seq, ev.message_id, ev.group_event,
           m.sender, m.recipient, m.group_name, m.kind, m.client_id, m.sent_at, m.nonce,
           m.ciphertext, m.sig, m.attachments,
           (SELECT k.wrapped_key FROM message_keys k
             WHERE k.message_id = ev.message_id AND k.user_id = ev.user_id)
      FROM ev
      LEFT JOIN LATERAL (
           SELECT (SELECT u.username FROM users u WHERE u.id = mm.sender_id) AS sender,
                  (SELECT u.username FROM users u WHERE u.id = mm.recipient_id) AS recipient,
                  (SELECT g.name FROM groups g WHERE g.id = mm.group_id) AS group_name,
                  mm.kind, mm.client_id, mm.sent_at, mm.nonce, mm.ciphertext, mm.sig,
                  mm.attachments
             FROM messages mm
            WHERE ev.nth = 1 AND mm.id = ev.message_id
           OFFSET 0) m ON true  -- not flattened: the nth test gates the lookups
     ORDER BY ev.request, ev.seq;
END
$$;
