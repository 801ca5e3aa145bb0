\set a random(0, 999)
\set b (:a + random(1, 999)) % 1000
SELECT user_id FROM sessions WHERE token_hash = sha256(('bench' || :a)::bytea) AND expires_at > now();
SELECT id AS sender FROM users WHERE username = 'flyyo_' || :a \gset
SELECT id AS recipient FROM users WHERE username = 'flyyo_' || :b \gset
BEGIN;
INSERT INTO messages (sender_id, recipient_id, client_id, kind, nonce, ciphertext, sig)
  VALUES (:sender, :recipient, gen_random_uuid(), 'text', 'AAAAAAAAAAAAAAAA', 'GIiwyjJfAJa+AuJqoZbRhK/QGLelWE5/pOuYTWo5J7dj3iEmjhghcKZAxVUXBk3h6T5NU3XhxYELw+6wEdoyrUVIGD5m0QlwwNDuLgkJAEC1iWG2CuhGtqCm/FvAmhJ/BBj4WWG5/UyunrH8K+7PuYkPm+JINO1oonvR2wgZLLY=', 'enNYKHynXsaoMaYBNLXpoxFeRiXVRV75pAVCn0zd3urXjH3Z1WYX9jZvcKzh4O2ivVIi45TivHGONdRJnDSdNFlgbO3vbOOPTVSNOCcDUEEfCbRVOo6dc+hUwDn6mNxtCNPSOAoqENtm59d94nPnq02b9DD6OvhObhMqO2rspdobliObEqvXoCwKEFENuXtPO3bJM6N6wfVSAl7evdlWSi2dxRNOq2/rVj1qOMLCEFOfi8L8UAM7iHJf1Kpu30IRjbKK1MK1D9PQbwKRoOinXGWIwBiCcq0zUTBJcylKRQ64jlLKFvmJNDoNqkfmVj4bhT6iGsOPp8zSyszgHgvmdg==')
  ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id AS message \gset
INSERT INTO message_keys (message_id, user_id, wrapped_key)
  VALUES (:message, :sender, 'I3eyli0sqbEy4RZimXXqRbUQLeOp79hhZbW0UksNspe/agYDXbRl418kmEmVD4Rg41YfbIFTekZ54dx7meq8DWdwz7n7G9gUQupBWMbvh83GTIfnDVj1nju4mV0lVdfGjb7Ppjpi+7q/Xm3R3Xw+tuwY1ZhiV6H/NP3X7jXwPB4DzkGbcFGJYeS203jigF4Vk84CnQURJOF2rSpsgUfMFKFvaF/v3ULdC2NxtidRZuCJCqDaoqiCFcANAY9BNLEJpP2nfG137hEE/8T+ItEOAGfvcj9LDwDbiXvOnAteL3jbz2ztMcL4KVuGC8cZ7CBTTw6Gm0hvOdgT14Ab6W3dQg=='), (:message, :recipient, 'I3eyli0sqbEy4RZimXXqRbUQLeOp79hhZbW0UksNspe/agYDXbRl418kmEmVD4Rg41YfbIFTekZ54dx7meq8DWdwz7n7G9gUQupBWMbvh83GTIfnDVj1nju4mV0lVdfGjb7Ppjpi+7q/Xm3R3Xw+tuwY1ZhiV6H/NP3X7jXwPB4DzkGbcFGJYeS203jigF4Vk84CnQURJOF2rSpsgUfMFKFvaF/v3ULdC2NxtidRZuCJCqDaoqiCFcANAY9BNLEJpP2nfG137hEE/8T+ItEOAGfvcj9LDwDbiXvOnAteL3jbz2ztMcL4KVuGC8cZ7CBTTw6Gm0hvOdgT14Ab6W3dQg==');
UPDATE inboxes SET last_seq = last_seq + 1 WHERE user_id = :recipient RETURNING last_seq \gset
INSERT INTO inbox_events (user_id, seq, message_id) VALUES (:recipient, :last_seq, :message);
SELECT pg_notify('fastchat_bench', :recipient::text);
COMMIT;
SELECT e.seq, m.id, su.username, m.kind, m.client_id, m.sent_at, m.nonce, m.ciphertext, m.sig, k.wrapped_key
  FROM inbox_events e JOIN messages m ON m.id = e.message_id
  JOIN message_keys k ON k.message_id = m.id AND k.user_id = e.user_id
  JOIN users su ON su.id = m.sender_id
 WHERE e.user_id = :recipient AND e.seq > :last_seq - 1 ORDER BY e.seq;
