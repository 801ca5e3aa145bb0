-- Back to one notification producer per message kind and the send path before it.
DROP FUNCTION fastchat_send_direct_messages(BIGINT[], TEXT[], BOOLEAN[], UUID[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], BIGINT[], UUID[]);
DROP FUNCTION fastchat_wake(BIGINT[]);
DROP FUNCTION fastchat_notification_max_bytes();
DROP FUNCTION fastchat_notification_channel();

-- One-to-one messages reach the recipient's server whole: a notification per message,
-- 'event:<recipient id>:{"seq": .., "message": {..}}', with everything the recipient's
-- stream shows, so the server holding that stream sends it on without reading it back.
-- The inbox stays the truth: a stream that gets a push out of seq order, or a plain
-- wake-up (recipient ids, as before), reads its inbox instead. Messages too big for a
-- notification's 8000 bytes go out as plain wake-ups.
CREATE FUNCTION fastchat_send_direct(
    sender_ids BIGINT[], recipients TEXT[], stores BOOLEAN[], client_ids UUID[],
    kinds TEXT[], nonces TEXT[], ciphertexts TEXT[], sigs TEXT[],
    sender_keys TEXT[], recipient_keys TEXT[])
RETURNS TABLE (ord BIGINT, recipient_id BIGINT, id BIGINT, sent_at TIMESTAMPTZ)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    ords BIGINT[];
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
        SELECT t.*, u.id AS rid
          FROM unnest(sender_ids, recipients, stores, client_ids, kinds, nonces,
                      ciphertexts, sigs, sender_keys, recipient_keys)
               WITH ORDINALITY AS t(sender_id, recipient, store, client_id, kind, nonce,
                                    ciphertext, sig, sender_key, recipient_key, ord)
          LEFT JOIN users u ON u.username = t.recipient
    ), inserted AS (
        INSERT INTO messages (sender_id, recipient_id, client_id, kind, nonce, ciphertext, sig)
        SELECT i.sender_id, i.rid, i.client_id, i.kind, i.nonce, i.ciphertext, i.sig
          FROM input i WHERE i.store AND i.rid IS NOT NULL ORDER BY i.ord
        ON CONFLICT (sender_id, client_id) DO NOTHING
        RETURNING messages.id, messages.sent_at, messages.sender_id, messages.client_id
    ), stored AS (
        -- A second copy of a message in the same batch is a retry: the first wins.
        SELECT DISTINCT ON (n.id) i.ord, n.id, n.sent_at, i.sender_id, i.rid,
               i.sender_key, i.recipient_key
          FROM inserted n
          JOIN input i ON i.sender_id = n.sender_id AND i.client_id = n.client_id
                      AND i.store AND i.rid IS NOT NULL
         ORDER BY n.id, i.ord
    ), keys AS (
        INSERT INTO message_keys (message_id, user_id, wrapped_key)
        SELECT s.id, s.sender_id, s.sender_key FROM stored s
        UNION ALL
        SELECT s.id, s.rid, s.recipient_key FROM stored s
    )
    SELECT array_agg(i.ord ORDER BY i.ord), array_agg(i.rid ORDER BY i.ord),
           array_agg(s.id ORDER BY i.ord), array_agg(s.sent_at ORDER BY i.ord),
           array_agg(i.rid ORDER BY i.ord) FILTER (WHERE s.id IS NOT NULL),
           array_agg(s.id ORDER BY i.ord) FILTER (WHERE s.id IS NOT NULL),
           array_agg(i.ord ORDER BY i.ord) FILTER (WHERE s.id IS NOT NULL)
      INTO ords, recipient_ids, ids, sent_ats, deliver_to, deliver_ids, deliver_ords
      FROM input i LEFT JOIN stored s ON s.ord = i.ord;

    IF deliver_ids IS NOT NULL THEN
        PERFORM fastchat_deliver(deliver_to, deliver_ids,
                                 array_fill(NULL::JSONB, ARRAY[cardinality(deliver_ids)]));
        -- Each message whole, with its seq in the recipient's inbox (the last of the
        -- recipient's events in this batch is its inbox's last_seq), in seq order.
        WITH pushed AS (
            SELECT d.rid, d.seq, 'event:' || d.rid || ':' || json_build_object(
                       'seq', d.seq, 'message', json_build_object(
                       'id', ids[d.ord],
                       'sender', (SELECT u.username FROM users u WHERE u.id = sender_ids[d.ord]),
                       'recipient', recipients[d.ord], 'kind', kinds[d.ord],
                       'client_id', client_ids[d.ord], 'sent_at', sent_ats[d.ord],
                       'nonce', nonces[d.ord], 'ciphertext', ciphertexts[d.ord],
                       'sig', sigs[d.ord], 'wrapped_key', recipient_keys[d.ord])) AS payload
              FROM (SELECT o.rid, o.ord, ib.last_seq + 1
                             - row_number() OVER (PARTITION BY o.rid ORDER BY o.ord DESC) AS seq
                      FROM unnest(deliver_to, deliver_ords) AS o(rid, ord)
                      JOIN inboxes ib ON ib.user_id = o.rid) d
        ), fits AS (
            SELECT p.*, octet_length(p.payload) < 8000 AS fits FROM pushed p
        )
        SELECT array_agg(f.payload ORDER BY f.rid, f.seq) FILTER (WHERE f.fits),
               array_agg(DISTINCT f.rid) FILTER (WHERE NOT f.fits)
          INTO payloads, unpushed
          FROM fits f;
        FOREACH one_push IN ARRAY coalesce(payloads, '{}') LOOP
            PERFORM pg_notify('fastchat_inbox', one_push);
        END LOOP;
        -- Those too big for a notification are read back from the inbox: after the
        -- pushes, so that a recipient with both reads rather than trusting a push.
        IF unpushed IS NOT NULL THEN
            PERFORM pg_notify('fastchat_inbox', array_to_string(unpushed, ','));
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM unnest(ords, recipient_ids, ids, sent_ats);
END
$$;
