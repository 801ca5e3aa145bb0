DROP FUNCTION fastchat_send_direct_messages(BIGINT[], TEXT[], BOOLEAN[], UUID[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], BIGINT[], UUID[]);

CREATE FUNCTION fastchat_send_direct_messages(
    sender_ids BIGINT[], recipients TEXT[], stores BOOLEAN[], client_ids UUID[],
    kinds TEXT[], nonces TEXT[], ciphertexts TEXT[], sigs TEXT[], signed_ats TEXT[],
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
    END IF;
    IF deliver_ids IS NOT NULL AND fastchat_wakeups_in_database() THEN
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
