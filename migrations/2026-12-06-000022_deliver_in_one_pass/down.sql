-- fastchat_deliver as migration 000021 left it: every delivery the general way.

CREATE OR REPLACE FUNCTION fastchat_deliver(user_ids BIGINT[], message_ids BIGINT[], group_events JSONB[])
RETURNS TABLE (user_id BIGINT, seq BIGINT, message_id BIGINT) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    -- Held until commit, so each inbox's seqs follow commit order.
    UPDATE inboxes i SET last_seq = i.last_seq + c.n
      FROM (SELECT u.user_id, count(*) AS n FROM unnest(user_ids) AS u(user_id)
             GROUP BY u.user_id ORDER BY u.user_id) c
     WHERE i.user_id = c.user_id;
    RETURN QUERY
    INSERT INTO inbox_events (user_id, seq, message_id, group_event)
    SELECT d.user_id,
           i.last_seq - count(*) OVER (PARTITION BY d.user_id)
               + row_number() OVER (PARTITION BY d.user_id ORDER BY d.ord),
           d.message_id, d.group_event
      FROM unnest(user_ids, message_ids, group_events)
           WITH ORDINALITY AS d(user_id, message_id, group_event, ord)
      JOIN inboxes i ON i.user_id = d.user_id
    RETURNING inbox_events.user_id, inbox_events.seq, inbox_events.message_id;
END
$$;
