\set a random(0, 999)
\set b (:a + random(1, 999)) % 1000
SELECT user_id FROM sessions WHERE token_hash = sha256(('bench' || :a)::bytea) AND expires_at > now();
SELECT id AS sender FROM users WHERE username = 'hmjfq_' || :a \gset
SELECT id AS recipient FROM users WHERE username = 'hmjfq_' || :b \gset
BEGIN;
INSERT INTO messages (sender_id, recipient_id, client_id, kind, nonce, ciphertext, sig)
  VALUES (:sender, :recipient, gen_random_uuid(), 'text', 'AAAAAAAAAAAAAAAA', 'LzZSV71HA3zpGTiqlBRETa0uMxufktI/FzR4gWh1Vf22Tfhs1xmvhp/k17JGcEt1GD0Gh8k9bxuZ1cNEV5QIHY3L/qctjMNmAuQdKqlQdaPHJ3bms7KStVfg1n5IQiQ0NRcGLyVR+kROUcitItRF61t76FaErzvfovlI2kDrR1E=', '1dk48+lcqjgz3WUVU4Au9+PCyglFjPvlFZzgtEV/XT3txna14ez2r6WCudjZohGC5M7sN89rqRNXNT07nZsjZ5wnD1sYHpoelEuHoFV2b9KGGon2EFBPMcRrN0wLTLfQ7i3Hsbo+5njJGKN4QU66N8AcGbp7zqMXADpTk/UBzxxYwBitZ3dL9/grZx52tnyiGo62Vi4RSSV9Lbam8PHd4TDXgUV2ecdIQdfOBI84N29cCC2eMcPU0vh/cCwdA740/CxEJaq7UCfxe9BbsX+MKYhbh+F7TXXGwIXc2Tn8n9z9kxCXgPEvw/xwpHc0QyejgHio2Akz3P24xCbZCZ7Vqg==')
  ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id AS message \gset
INSERT INTO message_keys (message_id, user_id, wrapped_key)
  VALUES (:message, :sender, 'Xhf5jSwwXsGaBgJ7O7kK8Dke0MU6gXUzxx6HgnE40AQx7Iv+iVI/ulwn3U5OfUqd50j4AZCTUYujDYM3AvoyPUjyrMwSuo4XZaCeT9XmV3fh4RKiRcbXqHrDgZOEV9Gd4Wiz/NuyekUTviJvKDahXTcNYN+A9g8VcOlL7bQyAFZiPtvKctLsjm8xnA0dF3v52gKVceLkRa/IbbgDx9MEjqqGDlKlFZ66WDjhhV+D7hDv9/lfOC335S6dWn4Go+Oo1nYsiqC5rB3zsicKbdtvsugGnZnhqBSs1HcrLt11cO9gkMP34aYTG2UWtes3W2PzOEAyzbxgEZ9ZOHGDSN2Cuw=='), (:message, :recipient, 'Xhf5jSwwXsGaBgJ7O7kK8Dke0MU6gXUzxx6HgnE40AQx7Iv+iVI/ulwn3U5OfUqd50j4AZCTUYujDYM3AvoyPUjyrMwSuo4XZaCeT9XmV3fh4RKiRcbXqHrDgZOEV9Gd4Wiz/NuyekUTviJvKDahXTcNYN+A9g8VcOlL7bQyAFZiPtvKctLsjm8xnA0dF3v52gKVceLkRa/IbbgDx9MEjqqGDlKlFZ66WDjhhV+D7hDv9/lfOC335S6dWn4Go+Oo1nYsiqC5rB3zsicKbdtvsugGnZnhqBSs1HcrLt11cO9gkMP34aYTG2UWtes3W2PzOEAyzbxgEZ9ZOHGDSN2Cuw==');
UPDATE inboxes SET last_seq = last_seq + 1 WHERE user_id = :recipient RETURNING last_seq \gset
INSERT INTO inbox_events (user_id, seq, message_id) VALUES (:recipient, :last_seq, :message);
SELECT pg_notify('fastchat_bench', 'event:' || :recipient::bigint || ':' || json_build_object(
  'seq', :last_seq::bigint, 'message', json_build_object('id', :message::bigint,
  'sender', 'hmjfq_' || :a::int, 'recipient', 'hmjfq_' || :b::int, 'kind', 'text',
  'client_id', gen_random_uuid(), 'sent_at', now(),
  'nonce', 'AAAAAAAAAAAAAAAA', 'ciphertext', 'LzZSV71HA3zpGTiqlBRETa0uMxufktI/FzR4gWh1Vf22Tfhs1xmvhp/k17JGcEt1GD0Gh8k9bxuZ1cNEV5QIHY3L/qctjMNmAuQdKqlQdaPHJ3bms7KStVfg1n5IQiQ0NRcGLyVR+kROUcitItRF61t76FaErzvfovlI2kDrR1E=', 'sig', '1dk48+lcqjgz3WUVU4Au9+PCyglFjPvlFZzgtEV/XT3txna14ez2r6WCudjZohGC5M7sN89rqRNXNT07nZsjZ5wnD1sYHpoelEuHoFV2b9KGGon2EFBPMcRrN0wLTLfQ7i3Hsbo+5njJGKN4QU66N8AcGbp7zqMXADpTk/UBzxxYwBitZ3dL9/grZx52tnyiGo62Vi4RSSV9Lbam8PHd4TDXgUV2ecdIQdfOBI84N29cCC2eMcPU0vh/cCwdA740/CxEJaq7UCfxe9BbsX+MKYhbh+F7TXXGwIXc2Tn8n9z9kxCXgPEvw/xwpHc0QyejgHio2Akz3P24xCbZCZ7Vqg==',
  'wrapped_key', 'Xhf5jSwwXsGaBgJ7O7kK8Dke0MU6gXUzxx6HgnE40AQx7Iv+iVI/ulwn3U5OfUqd50j4AZCTUYujDYM3AvoyPUjyrMwSuo4XZaCeT9XmV3fh4RKiRcbXqHrDgZOEV9Gd4Wiz/NuyekUTviJvKDahXTcNYN+A9g8VcOlL7bQyAFZiPtvKctLsjm8xnA0dF3v52gKVceLkRa/IbbgDx9MEjqqGDlKlFZ66WDjhhV+D7hDv9/lfOC335S6dWn4Go+Oo1nYsiqC5rB3zsicKbdtvsugGnZnhqBSs1HcrLt11cO9gkMP34aYTG2UWtes3W2PzOEAyzbxgEZ9ZOHGDSN2Cuw==')));
COMMIT;
