-- The current definition of every FastChat SQL function and trigger, as PostgreSQL
-- prints them from a database the migrations made. Do not edit: a test compares this
-- file with the database; after a migration changes one, rewrite it with
--   FASTCHAT_BLESS=1 scripts/test -p fastchat-tests --test store
-- and review the diff.

-- fastchat_deliver(user_ids bigint[], message_ids bigint[], group_events jsonb[])
CREATE OR REPLACE FUNCTION public.fastchat_deliver(user_ids bigint[], message_ids bigint[], group_events jsonb[])
 RETURNS TABLE(user_id bigint, seq bigint, message_id bigint)
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
 SET enable_hashjoin TO 'off'
 SET enable_mergejoin TO 'off'
 SET enable_seqscan TO 'off'
AS $function$
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
$function$;

-- fastchat_find_live_sessions(hashes bytea[])
CREATE OR REPLACE FUNCTION public.fastchat_find_live_sessions(hashes bytea[])
 RETURNS TABLE(token_hash bytea, user_id bigint, username text, expires_at timestamp with time zone)
 LANGUAGE plpgsql
 STABLE
 SET plan_cache_mode TO 'force_generic_plan'
 SET enable_hashjoin TO 'off'
 SET enable_mergejoin TO 'off'
 SET enable_seqscan TO 'off'
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.token_hash, u.id, u.username, s.expires_at
      FROM unnest(hashes) AS h(hash)
      JOIN sessions s ON s.token_hash = h.hash
      JOIN users u ON u.id = s.user_id
     WHERE s.expires_at > now();
END
$function$;

-- fastchat_forget_messages()
CREATE OR REPLACE FUNCTION public.fastchat_forget_messages()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    DELETE FROM message_keys k USING gone WHERE k.message_id = gone.id;
    DELETE FROM inbox_events e USING gone WHERE e.message_id = gone.id;
    RETURN NULL;
END
$function$;

-- fastchat_forget_users()
CREATE OR REPLACE FUNCTION public.fastchat_forget_users()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    DELETE FROM message_keys k USING gone WHERE k.user_id = gone.id;
    DELETE FROM inbox_events e USING gone WHERE e.user_id = gone.id;
    RETURN NULL;
END
$function$;

-- fastchat_login_attempt(name text, client text, window_secs bigint, lockout_secs bigint, max_per_name integer, max_per_address integer)
CREATE OR REPLACE FUNCTION public.fastchat_login_attempt(name text, client text, window_secs bigint, lockout_secs bigint, max_per_name integer, max_per_address integer)
 RETURNS TABLE(allowed boolean, retry_after_secs bigint, user_id bigint, password_hash text)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
    window_length CONSTANT INTERVAL := window_secs * interval '1 second';
    lockout CONSTANT INTERVAL := lockout_secs * interval '1 second';
    found_id BIGINT;
    found_hash TEXT;
    by_address address_attempts;
    by_name login_attempts;
    held_until TIMESTAMPTZ;
BEGIN
    SELECT u.id, u.password_hash INTO found_id, found_hash FROM users u WHERE u.username = name;

    -- The rows exist and are locked, so that attempts made at once count one by one.
    INSERT INTO address_attempts (address, attempts, window_start)
    VALUES (client, 0, now()) ON CONFLICT DO NOTHING;
    SELECT * INTO by_address FROM address_attempts a WHERE a.address = client FOR UPDATE;
    IF found_id IS NOT NULL THEN
        INSERT INTO login_attempts (username, address, attempts, window_start)
        VALUES (name, client, 0, now()) ON CONFLICT DO NOTHING;
        SELECT * INTO by_name FROM login_attempts l
         WHERE l.username = name AND l.address = client FOR UPDATE;
    END IF;

    held_until := greatest(
        CASE WHEN by_address.locked_until > now() THEN by_address.locked_until END,
        CASE WHEN by_name.locked_until > now() THEN by_name.locked_until END);
    IF held_until IS NOT NULL THEN
        RETURN QUERY SELECT false, ceil(extract(epoch FROM held_until - now()))::BIGINT,
                            found_id, found_hash;
        RETURN;
    END IF;

    -- A window that ran out, or a lockout that ended, starts the count afresh.
    UPDATE address_attempts a SET
        attempts = CASE WHEN a.locked_until IS NOT NULL OR a.window_start < now() - window_length
                        THEN 1 ELSE a.attempts + 1 END,
        window_start = CASE WHEN a.locked_until IS NOT NULL OR a.window_start < now() - window_length
                            THEN now() ELSE a.window_start END,
        locked_until = NULL
     WHERE a.address = client
    RETURNING * INTO by_address;
    IF by_address.attempts > max_per_address THEN
        UPDATE address_attempts SET locked_until = now() + lockout WHERE address = client
        RETURNING * INTO by_address;
    END IF;
    IF found_id IS NOT NULL THEN
        UPDATE login_attempts l SET
            attempts = CASE WHEN l.locked_until IS NOT NULL OR l.window_start < now() - window_length
                            THEN 1 ELSE l.attempts + 1 END,
            window_start = CASE WHEN l.locked_until IS NOT NULL OR l.window_start < now() - window_length
                                THEN now() ELSE l.window_start END,
            locked_until = NULL
         WHERE l.username = name AND l.address = client
        RETURNING * INTO by_name;
        IF by_name.attempts > max_per_name THEN
            UPDATE login_attempts SET locked_until = now() + lockout
             WHERE username = name AND address = client
            RETURNING * INTO by_name;
        END IF;
    END IF;

    held_until := greatest(by_address.locked_until, by_name.locked_until);
    RETURN QUERY SELECT held_until IS NULL, ceil(extract(epoch FROM held_until - now()))::BIGINT,
                        found_id, found_hash;
END
$function$;

-- fastchat_login_succeeded(name text, client text)
CREATE OR REPLACE FUNCTION public.fastchat_login_succeeded(name text, client text)
 RETURNS void
 LANGUAGE sql
AS $function$
    DELETE FROM login_attempts WHERE username = name AND address = client;
    UPDATE address_attempts SET attempts = greatest(attempts - 1, 0) WHERE address = client;
$function$;

-- fastchat_notification_channel()
CREATE OR REPLACE FUNCTION public.fastchat_notification_channel()
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT 'fastchat_inbox' $function$;

-- fastchat_notification_max_bytes()
CREATE OR REPLACE FUNCTION public.fastchat_notification_max_bytes()
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT 7999 $function$;

-- fastchat_read_inbox_events(user_ids bigint[], afters bigint[], limits bigint[])
CREATE OR REPLACE FUNCTION public.fastchat_read_inbox_events(user_ids bigint[], afters bigint[], limits bigint[])
 RETURNS TABLE(request bigint, seq bigint, message_id bigint, group_event jsonb, sender text, recipient text, group_name text, kind text, client_id uuid, sent_at timestamp with time zone, nonce text, ciphertext text, sig text, attachments text[], signed_at text, group_uid uuid, group_epoch bigint, group_head text, wrapped_key text)
 LANGUAGE plpgsql
 STABLE
 SET plan_cache_mode TO 'force_generic_plan'
 SET enable_hashjoin TO 'off'
 SET enable_mergejoin TO 'off'
 SET enable_seqscan TO 'off'
AS $function$
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
           m.ciphertext, m.sig, m.attachments, m.signed_at, m.group_uid, m.group_epoch,
           m.group_head,
           (SELECT k.wrapped_key FROM message_keys k
             WHERE k.message_id = ev.message_id AND k.user_id = ev.user_id)
      FROM ev
      LEFT JOIN LATERAL (
           SELECT (SELECT u.username FROM users u WHERE u.id = mm.sender_id) AS sender,
                  (SELECT u.username FROM users u WHERE u.id = mm.recipient_id) AS recipient,
                  g.name AS group_name, mm.kind, mm.client_id, mm.sent_at, mm.nonce,
                  mm.ciphertext, mm.sig, mm.attachments, mm.signed_at, g.uid AS group_uid,
                  mm.group_epoch, mm.group_head
             FROM messages mm
             LEFT JOIN groups g ON g.id = mm.group_id
            WHERE ev.nth = 1 AND mm.id = ev.message_id
           OFFSET 0) m ON true  -- not flattened: the nth test gates the lookups
     ORDER BY ev.request, ev.seq;
END
$function$;

-- fastchat_send_direct_messages(sender_ids bigint[], recipients text[], stores boolean[], client_ids uuid[], kinds text[], nonces text[], ciphertexts text[], sigs text[], signed_ats text[], sender_keys text[], recipient_keys text[], attachment_ords bigint[], attachment_ids uuid[])
CREATE OR REPLACE FUNCTION public.fastchat_send_direct_messages(sender_ids bigint[], recipients text[], stores boolean[], client_ids uuid[], kinds text[], nonces text[], ciphertexts text[], sigs text[], signed_ats text[], sender_keys text[], recipient_keys text[], attachment_ords bigint[], attachment_ids uuid[])
 RETURNS TABLE(ord bigint, outcome text, recipient_id bigint, id bigint, sent_at timestamp with time zone, push text)
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
 SET enable_hashjoin TO 'off'
 SET enable_mergejoin TO 'off'
 SET enable_seqscan TO 'off'
AS $function$
#variable_conflict use_column
DECLARE
    channel CONSTANT TEXT := fastchat_notification_channel();
    max_bytes CONSTANT INTEGER := fastchat_notification_max_bytes();
    ords BIGINT[];
    outcomes TEXT[];
    recipient_ids BIGINT[];
    ids BIGINT[];
    sent_ats TIMESTAMPTZ[];
    deliver_to BIGINT[];
    deliver_ids BIGINT[];
    deliver_ords BIGINT[];
    payloads TEXT[];
    pushed_ords BIGINT[];
    one_push TEXT;
    unpushed BIGINT[];
BEGIN
    WITH input AS (
        SELECT t.*, u.id AS rid,
               coalesce((SELECT array_agg(a.blob_id ORDER BY a.n)
                           FROM unnest(attachment_ords, attachment_ids)
                                WITH ORDINALITY AS a(ord, blob_id, n)
                          WHERE a.ord = t.ord), '{}') AS blob_ids
          FROM unnest(sender_ids, recipients, stores, client_ids, kinds, nonces,
                      ciphertexts, sigs, signed_ats, sender_keys, recipient_keys)
               WITH ORDINALITY AS t(sender_id, recipient, store, client_id, kind, nonce,
                                    ciphertext, sig, signed_at, sender_key, recipient_key,
                                    ord)
          LEFT JOIN users u ON u.username = t.recipient
    ), checked AS (
        SELECT i.*,
               cardinality(i.blob_ids) = 0
               OR (SELECT count(*) FROM blobs b
                    WHERE b.id = ANY (i.blob_ids) AND b.uploader_id = i.sender_id)
                  = cardinality(i.blob_ids) AS blobs_ok
          FROM input i
    ), inserted AS (
        INSERT INTO messages (sender_id, recipient_id, client_id, kind, nonce, ciphertext,
                              sig, attachments, signed_at)
        SELECT c.sender_id, c.rid, c.client_id, c.kind, c.nonce, c.ciphertext, c.sig,
               c.blob_ids::TEXT[], c.signed_at
          FROM checked c WHERE c.store AND c.rid IS NOT NULL AND c.blobs_ok ORDER BY c.ord
        ON CONFLICT (sender_id, client_id) DO NOTHING
        RETURNING messages.id, messages.sent_at, messages.sender_id, messages.client_id
    ), stored AS (
        -- A second copy of a message in the same batch is a retry: the first wins.
        SELECT DISTINCT ON (n.id) c.ord, n.id, n.sent_at, c.sender_id, c.rid,
               c.sender_key, c.recipient_key, c.blob_ids
          FROM inserted n
          JOIN checked c ON c.sender_id = n.sender_id AND c.client_id = n.client_id
                        AND c.store AND c.rid IS NOT NULL AND c.blobs_ok
         ORDER BY n.id, c.ord
    ), keys AS (
        INSERT INTO message_keys (message_id, user_id, wrapped_key)
        SELECT s.id, s.sender_id, s.sender_key FROM stored s
        UNION ALL
        SELECT s.id, s.rid, s.recipient_key FROM stored s
    ), attached AS (
        INSERT INTO message_attachments (message_id, blob_id)
        SELECT s.id, b.blob_id FROM stored s CROSS JOIN LATERAL unnest(s.blob_ids) AS b(blob_id)
    )
    SELECT array_agg(c.ord ORDER BY c.ord),
           array_agg(CASE WHEN c.rid IS NULL THEN 'no_recipient'
                          WHEN NOT c.store THEN 'keys_mismatch'
                          WHEN NOT c.blobs_ok THEN 'invalid_attachment'
                          WHEN s.id IS NOT NULL THEN 'stored'
                          ELSE 'duplicate' END ORDER BY c.ord),
           array_agg(c.rid ORDER BY c.ord), array_agg(s.id ORDER BY c.ord),
           array_agg(s.sent_at ORDER BY c.ord),
           array_agg(c.rid ORDER BY c.ord) FILTER (WHERE s.id IS NOT NULL),
           array_agg(s.id ORDER BY c.ord) FILTER (WHERE s.id IS NOT NULL),
           array_agg(c.ord ORDER BY c.ord) FILTER (WHERE s.id IS NOT NULL)
      INTO ords, outcomes, recipient_ids, ids, sent_ats, deliver_to, deliver_ids, deliver_ords
      FROM checked c LEFT JOIN stored s ON s.ord = c.ord;

    -- A duplicate is answered with the message stored before (earlier, or earlier in
    -- this batch) if it went to the same recipient. A statement of its own, so that it
    -- sees a concurrent batch's message that the insert above waited for.
    IF 'duplicate' = ANY (outcomes) THEN
        SELECT array_agg(CASE WHEN d.outcome <> 'duplicate' THEN d.outcome
                              WHEN m.id IS NULL THEN 'unanswered'
                              WHEN m.recipient_id = d.rid AND m.group_id IS NULL THEN 'retry'
                              ELSE 'client_id_reused' END ORDER BY d.ord),
               array_agg(coalesce(d.id, m.id) ORDER BY d.ord),
               array_agg(coalesce(d.sent_at, m.sent_at) ORDER BY d.ord)
          INTO outcomes, ids, sent_ats
          FROM unnest(ords, outcomes, recipient_ids, ids, sent_ats, sender_ids, client_ids)
               AS d(ord, outcome, rid, id, sent_at, sender_id, client_id)
          LEFT JOIN messages m ON d.outcome = 'duplicate'
                              AND m.sender_id = d.sender_id AND m.client_id = d.client_id;
    END IF;

    IF deliver_ids IS NOT NULL THEN
        PERFORM fastchat_deliver(deliver_to, deliver_ids,
                                 array_fill(NULL::JSONB, ARRAY[cardinality(deliver_ids)]));
        -- Each message whole, with its seq in the recipient's inbox (the last of the
        -- recipient's events in this batch is its inbox's last_seq), in seq order.
        WITH pushed AS (
            SELECT d.rid, d.seq, d.ord, 'push:' || d.rid || ':' || json_build_object(
                       'seq', d.seq, 'message', json_build_object(
                       'id', ids[d.ord],
                       'sender', (SELECT u.username FROM users u WHERE u.id = sender_ids[d.ord]),
                       'recipient', recipients[d.ord], 'kind', kinds[d.ord],
                       'client_id', client_ids[d.ord], 'sent_at', sent_ats[d.ord],
                       'nonce', nonces[d.ord], 'ciphertext', ciphertexts[d.ord],
                       'sig', sigs[d.ord], 'signed_at', signed_ats[d.ord],
                       'attachments', coalesce((SELECT array_agg(a.blob_id ORDER BY a.n)
                                                  FROM unnest(attachment_ords, attachment_ids)
                                                       WITH ORDINALITY AS a(ord, blob_id, n)
                                                 WHERE a.ord = d.ord), '{}'),
                       'wrapped_key', recipient_keys[d.ord])) AS payload
              FROM (SELECT o.rid, o.ord, ib.last_seq + 1
                             - row_number() OVER (PARTITION BY o.rid ORDER BY o.ord DESC) AS seq
                      FROM unnest(deliver_to, deliver_ords) AS o(rid, ord)
                      JOIN inboxes ib ON ib.user_id = o.rid) d
        )
        SELECT array_agg(p.payload ORDER BY p.rid, p.seq)
                   FILTER (WHERE octet_length(p.payload) <= max_bytes),
               array_agg(p.ord ORDER BY p.rid, p.seq)
                   FILTER (WHERE octet_length(p.payload) <= max_bytes),
               array_agg(DISTINCT p.rid) FILTER (WHERE octet_length(p.payload) > max_bytes)
          INTO payloads, pushed_ords, unpushed
          FROM pushed p;
        IF fastchat_wakeups_in_database() THEN
            FOREACH one_push IN ARRAY coalesce(payloads, '{}') LOOP
                PERFORM pg_notify(channel, one_push);
            END LOOP;
            IF unpushed IS NOT NULL THEN
                PERFORM fastchat_wake(unpushed);
            END IF;
            pushed_ords := NULL;
        END IF;
    END IF;
    -- Silent, each stored message's push goes back to the server, which publishes it
    -- once this transaction has committed (NULL: too big to push, or already sent).
    RETURN QUERY
    SELECT r.ord, r.outcome, r.recipient_id, r.id, r.sent_at, p.payload
      FROM unnest(ords, outcomes, recipient_ids, ids, sent_ats)
           AS r(ord, outcome, recipient_id, id, sent_at)
      LEFT JOIN unnest(pushed_ords, payloads) AS p(ord, payload) ON p.ord = r.ord
     ORDER BY r.ord;
END
$function$;

-- fastchat_session_ended()
CREATE OR REPLACE FUNCTION public.fastchat_session_ended()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF OLD.expires_at > now() AND (TG_OP = 'DELETE' OR NEW.expires_at <= now()) THEN
        PERFORM pg_notify(fastchat_notification_channel(),
                          'revoke:' || encode(OLD.token_hash, 'hex'));
    END IF;
    RETURN NULL;
END
$function$;

-- fastchat_wake(user_ids bigint[])
CREATE OR REPLACE FUNCTION public.fastchat_wake(user_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    channel CONSTANT TEXT := fastchat_notification_channel();
    width CONSTANT INTEGER := fastchat_notification_max_bytes() - 20;
    payload TEXT;
BEGIN
    IF NOT fastchat_wakeups_in_database() THEN
        RETURN;
    END IF;
    FOR payload IN
        SELECT string_agg(d.id::TEXT, ',' ORDER BY d.id)
          FROM (SELECT u.id, sum(octet_length(u.id::TEXT) + 1) OVER (ORDER BY u.id) AS upto
                  FROM (SELECT DISTINCT x AS id FROM unnest(user_ids) AS x WHERE x IS NOT NULL) u) d
         GROUP BY (d.upto - 1) / width
         ORDER BY (d.upto - 1) / width
    LOOP
        PERFORM pg_notify(channel, payload);
    END LOOP;
END
$function$;

-- fastchat_wakeups_in_database()
CREATE OR REPLACE FUNCTION public.fastchat_wakeups_in_database()
 RETURNS boolean
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
    SELECT current_setting('fastchat.wakeup', true) IS DISTINCT FROM 'elsewhere'
$function$;

-- trigger messages_forget
CREATE TRIGGER messages_forget AFTER DELETE ON public.messages REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION fastchat_forget_messages();

-- trigger sessions_ended
CREATE TRIGGER sessions_ended AFTER DELETE OR UPDATE OF expires_at ON public.sessions FOR EACH ROW EXECUTE FUNCTION fastchat_session_ended();

-- trigger users_forget
CREATE TRIGGER users_forget AFTER DELETE ON public.users REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION fastchat_forget_users();
