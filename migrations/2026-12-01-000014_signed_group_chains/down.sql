-- Back to unsigned groups (whatever groups exist now end: their chains go) and v1-only
-- message headers.
DELETE FROM groups;
DROP FUNCTION fastchat_send_direct_messages(BIGINT[], TEXT[], BOOLEAN[], UUID[], TEXT[], TEXT[],
                                            TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], BIGINT[], UUID[]);
DROP FUNCTION fastchat_read_inbox_events(BIGINT[], BIGINT[], BIGINT[]);
ALTER TABLE users DROP COLUMN contacts_backup;
ALTER TABLE messages DROP COLUMN signed_at, DROP COLUMN group_epoch, DROP COLUMN group_head;
DROP TABLE group_statements;
ALTER TABLE group_members DROP COLUMN key_fingerprint;
ALTER TABLE groups DROP COLUMN uid, DROP COLUMN epoch, DROP COLUMN head;

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

-- One-to-one messages that arrived together, stored in one statement: recipient
-- lookup, attachment check, the messages, their keys and attachments, the inbox events
-- and the notifications. Position i of the first ten arrays describes message i; its
-- attachments are the attachment_ids whose attachment_ords entry is i (1-based).
--
-- Answers, for every position, `outcome` and what goes with it:
--   stored              id and sent_at of the new message
--   retry               its sender already sent this client_id to this recipient: that
--                       message's id and sent_at
--   client_id_reused    its sender used this client_id for another message
--   no_recipient        no user has that name
--   keys_mismatch       stores[i] was false (the caller found its keys wrong): only the
--                       recipient was looked up, so the caller can tell the two apart
--   invalid_attachment  an attachment is not a blob its sender uploaded
-- recipient_id is the recipient's id wherever there is one.
--
-- Each stored message goes to its recipient's server whole, as a push (see
-- notification.rs), with its seq in the recipient's inbox; those too big to push wake
-- the recipient instead, after the pushes, so that a recipient with both reads.
CREATE FUNCTION fastchat_send_direct_messages(
    sender_ids BIGINT[], recipients TEXT[], stores BOOLEAN[], client_ids UUID[],
    kinds TEXT[], nonces TEXT[], ciphertexts TEXT[], sigs TEXT[],
    sender_keys TEXT[], recipient_keys TEXT[],
    attachment_ords BIGINT[], attachment_ids UUID[])
RETURNS TABLE (ord BIGINT, outcome TEXT, recipient_id BIGINT, id BIGINT, sent_at TIMESTAMPTZ)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
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
                      ciphertexts, sigs, sender_keys, recipient_keys)
               WITH ORDINALITY AS t(sender_id, recipient, store, client_id, kind, nonce,
                                    ciphertext, sig, sender_key, recipient_key, ord)
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
                              sig, attachments)
        SELECT c.sender_id, c.rid, c.client_id, c.kind, c.nonce, c.ciphertext, c.sig,
               c.blob_ids::TEXT[]
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
            SELECT d.rid, d.seq, 'push:' || d.rid || ':' || json_build_object(
                       'seq', d.seq, 'message', json_build_object(
                       'id', ids[d.ord],
                       'sender', (SELECT u.username FROM users u WHERE u.id = sender_ids[d.ord]),
                       'recipient', recipients[d.ord], 'kind', kinds[d.ord],
                       'client_id', client_ids[d.ord], 'sent_at', sent_ats[d.ord],
                       'nonce', nonces[d.ord], 'ciphertext', ciphertexts[d.ord],
                       'sig', sigs[d.ord],
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
               array_agg(DISTINCT p.rid) FILTER (WHERE octet_length(p.payload) > max_bytes)
          INTO payloads, unpushed
          FROM pushed p;
        FOREACH one_push IN ARRAY coalesce(payloads, '{}') LOOP
            PERFORM pg_notify(channel, one_push);
        END LOOP;
        IF unpushed IS NOT NULL THEN
            PERFORM fastchat_wake(unpushed);
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM unnest(ords, outcomes, recipient_ids, ids, sent_ats);
END
$$;
