-- fastchat_deliver as migration 000010 left it.

CREATE OR REPLACE FUNCTION fastchat_deliver(user_ids BIGINT[], message_ids BIGINT[], group_events JSONB[])
RETURNS VOID LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- In user id order (no deadlocks); held until commit, so seqs follow commit order.
    PERFORM 1 FROM inboxes WHERE inboxes.user_id = ANY (user_ids)
      ORDER BY inboxes.user_id FOR UPDATE;
    INSERT INTO inbox_events (user_id, seq, message_id, group_event)
    SELECT d.user_id,
           (SELECT i.last_seq FROM inboxes i WHERE i.user_id = d.user_id)
               + row_number() OVER (PARTITION BY d.user_id ORDER BY d.ord),
           d.message_id, d.group_event
      FROM unnest(user_ids, message_ids, group_events)
           WITH ORDINALITY AS d(user_id, message_id, group_event, ord)
     WHERE EXISTS (SELECT 1 FROM inboxes i WHERE i.user_id = d.user_id);
    UPDATE inboxes i SET last_seq = i.last_seq + c.n
      FROM (SELECT u.user_id, count(*) AS n FROM unnest(user_ids) AS u(user_id)
             GROUP BY u.user_id) c
     WHERE i.user_id = c.user_id;
END
$$;
