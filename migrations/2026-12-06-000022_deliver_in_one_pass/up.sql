-- fastchat_deliver in one pass when each inbox gets one event, as a group message gives
-- every member: the counters' update returns each new last_seq, which is that event's
-- seq, and the insert takes it from there. The general way (several events to one
-- inbox) bumps every counter by its count, then finds each counter again and numbers
-- that inbox's events with window functions over a sort: for a 1,000-member message,
-- 8.0 ms against 6.0 ms for one pass, in psql, eight calls each, alternating. Either
-- way the counters are locked in user id order (the sort ahead of the nested loop), so
-- two deliveries cannot deadlock.

CREATE OR REPLACE FUNCTION fastchat_deliver(user_ids BIGINT[], message_ids BIGINT[], group_events JSONB[])
RETURNS TABLE (user_id BIGINT, seq BIGINT, message_id BIGINT) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    IF (SELECT count(DISTINCT u.user_id) FROM unnest(user_ids) AS u(user_id))
       = cardinality(user_ids) THEN
        -- Held until commit, so each inbox's seqs follow commit order.
        RETURN QUERY
        WITH bumped AS (
            UPDATE inboxes i SET last_seq = i.last_seq + 1
              FROM (SELECT * FROM unnest(user_ids, message_ids, group_events)
                                  AS u(user_id, message_id, group_event)
                     ORDER BY u.user_id) d
             WHERE i.user_id = d.user_id
            RETURNING i.user_id, i.last_seq, d.message_id, d.group_event)
        INSERT INTO inbox_events (user_id, seq, message_id, group_event)
        SELECT b.user_id, b.last_seq, b.message_id, b.group_event FROM bumped b
        RETURNING inbox_events.user_id, inbox_events.seq, inbox_events.message_id;
        RETURN;
    END IF;
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
