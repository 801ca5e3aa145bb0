-- The version of 2026-11-22-000008_direct_send.
CREATE OR REPLACE FUNCTION fastchat_send_direct(
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
           array_agg(s.id ORDER BY i.ord) FILTER (WHERE s.id IS NOT NULL)
      INTO ords, recipient_ids, ids, sent_ats, deliver_to, deliver_ids
      FROM input i LEFT JOIN stored s ON s.ord = i.ord;

    IF deliver_ids IS NOT NULL THEN
        PERFORM fastchat_deliver(deliver_to, deliver_ids,
                                 array_fill(NULL::JSONB, ARRAY[cardinality(deliver_ids)]));
        PERFORM pg_notify('fastchat_inbox',
            (SELECT string_agg(DISTINCT r::TEXT, ',') FROM unnest(deliver_to) AS r));
    END IF;
    RETURN QUERY SELECT * FROM unnest(ords, recipient_ids, ids, sent_ats);
END
$$;
