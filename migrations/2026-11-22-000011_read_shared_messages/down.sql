-- The version of 2026-11-22-000007_batched_delivery.
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
