\set a random(0, 999)
\set b (:a + random(1, 999)) % 1000
SELECT user_id FROM sessions WHERE token_hash = sha256(('bench' || :a)::bytea) AND expires_at > now();
SELECT id AS sender FROM users WHERE username = 'bzyhb_' || :a \gset
SELECT id AS recipient FROM users WHERE username = 'bzyhb_' || :b \gset
BEGIN;
INSERT INTO messages (sender_id, recipient_id, client_id, kind, nonce, ciphertext, sig)
  VALUES (:sender, :recipient, gen_random_uuid(), 'text', 'AAAAAAAAAAAAAAAA', 'mzXb0hGl/+ZC/54KLuFEzYvYSRsu4cBQkWD/6FSr2dnqK1TAIXm7w48KGj7dl/PBmQhF+kkNxFqC0VH8Zj4Jg34ifyjyaQjFhdcqulm6Y/8uOQYARakVOJ9fbfSJoNs66enOYB8Ger2Bo2UOG0HKl/jWONjHOCdq+sww4GIxa3o=', 'sVbratpsIicgvvY8+lFSC32nEi3p7/aU6RJ26QF30dUsIBjMwBJlWnaDFsVE849mfpxjs+uJTPxgShV63LV21NRVka9WahHJVN48e37mKfvIYy+EYdfAI55Y/vsnW07J5vr7a16+El1w8DWfYrF/JZCw/495VWIC5XvPd0scBnFW2s3qyVEvbkGpwiBaaMWhJVgiRG181mtRaLBbjSZV/rwTGuE0vrCnXJciTXIqFSMt08NcucgC8+JJM6F0Wo9eZ9ucHExBdJmYQ2cSYOWAiVGwTDQ5JOUb069W9DejhhqCjqVMWFkxUSq25G4x3kYLlz8qrDgudS4v+geJBbo6jA==')
  ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id AS message \gset
INSERT INTO message_keys (message_id, user_id, wrapped_key)
  VALUES (:message, :sender, 'jXw8bRyhmgVudEjuwfXEhKv0C3sSAbzZSU0yWEhl2y2RLSAqoc6mhpIr12+bjImWJAvV2OToRMuibrbHkEDr2YPVNCKEnjGnefB/pJqXvAqG5HhnnTRTpI6xLHUS1ZTXjLGPt0j1Ed11T7paw42ZgxnlwfgeyynJjpjpnseTC9Ajeh/IYOM66uYVc9k9d3sL3iK8cR7fErCgBSQiOyVt76HeqrvO5eRuz1GfOcNgJQZLgZJrVp0ORgAX6xDBS2FKh0hpTOHkJhx/DD3YHN1ehESTjR5NJ+wtNBcqcni1UE/fQ4gl97l1KE8Y9uiG5ydoMr1fsRtOHy9SVYcJMZS3iQ=='), (:message, :recipient, 'jXw8bRyhmgVudEjuwfXEhKv0C3sSAbzZSU0yWEhl2y2RLSAqoc6mhpIr12+bjImWJAvV2OToRMuibrbHkEDr2YPVNCKEnjGnefB/pJqXvAqG5HhnnTRTpI6xLHUS1ZTXjLGPt0j1Ed11T7paw42ZgxnlwfgeyynJjpjpnseTC9Ajeh/IYOM66uYVc9k9d3sL3iK8cR7fErCgBSQiOyVt76HeqrvO5eRuz1GfOcNgJQZLgZJrVp0ORgAX6xDBS2FKh0hpTOHkJhx/DD3YHN1ehESTjR5NJ+wtNBcqcni1UE/fQ4gl97l1KE8Y9uiG5ydoMr1fsRtOHy9SVYcJMZS3iQ==');
UPDATE inboxes SET last_seq = last_seq + 1 WHERE user_id = :recipient RETURNING last_seq \gset
INSERT INTO inbox_events (user_id, seq, message_id) VALUES (:recipient, :last_seq, :message);
SELECT pg_notify('fastchat_bench', :recipient::text);
COMMIT;
SELECT e.seq, m.id, su.username, m.kind, m.client_id, m.sent_at, m.nonce, m.ciphertext, m.sig, k.wrapped_key
  FROM inbox_events e JOIN messages m ON m.id = e.message_id
  JOIN message_keys k ON k.message_id = m.id AND k.user_id = e.user_id
  JOIN users su ON su.id = m.sender_id
 WHERE e.user_id = :recipient AND e.seq > :last_seq - 1 ORDER BY e.seq;
