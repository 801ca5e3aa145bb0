-- The version of 2026-11-22-000007_batched_delivery.
CREATE OR REPLACE FUNCTION fastchat_deliver(user_ids BIGINT[], message_ids BIGINT[], group_events JSONB[])
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
