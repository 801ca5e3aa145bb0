-- fastchat_deliver takes its recipients' inbox counters by bumping them, in one pass
-- joined to their ids, where it used to lock them first (`SELECT ... WHERE user_id =
-- ANY (user_ids) ... FOR UPDATE`) and bump them after. Measured with concurrent
-- messages to a 1,000-member group:
--
-- * A counter that another transaction bumped while this one waited for it is checked
--   again (EvalPlanQual). With `= ANY (user_ids)` each check re-scanned the index with
--   the whole array, sorting it anew: a million comparisons per counter taken, a fifth
--   of the machine's CPU at 20 such messages a second. Joined to the ids, a check looks
--   at one row.
-- * The counters stay locked from the first one taken until commit, so messages to one
--   group take them one after another; a pass fewer holds them for less.
--
-- The counters are still taken in user id order, so two deliveries cannot deadlock:
-- with hash and merge joins and sequential scans off, the plan is a nested loop over
-- the ids, sorted, that probes the counters' primary key, and an UPDATE locks each row
-- as it reaches it. Each event's seq then comes from its bumped counter, which the
-- INSERT, a statement later, reads as this transaction left it.

CREATE OR REPLACE FUNCTION fastchat_deliver(user_ids BIGINT[], message_ids BIGINT[], group_events JSONB[])
RETURNS VOID LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
BEGIN
    -- Held until commit, so each inbox's seqs follow commit order.
    UPDATE inboxes i SET last_seq = i.last_seq + c.n
      FROM (SELECT u.user_id, count(*) AS n FROM unnest(user_ids) AS u(user_id)
             GROUP BY u.user_id ORDER BY u.user_id) c
     WHERE i.user_id = c.user_id;
    INSERT INTO inbox_events (user_id, seq, message_id, group_event)
    SELECT d.user_id,
           i.last_seq - count(*) OVER (PARTITION BY d.user_id)
               + row_number() OVER (PARTITION BY d.user_id ORDER BY d.ord),
           d.message_id, d.group_event
      FROM unnest(user_ids, message_ids, group_events)
           WITH ORDINALITY AS d(user_id, message_id, group_event, ord)
      JOIN inboxes i ON i.user_id = d.user_id;
END
$$;
