\set a random(0, 999)
\set b (:a + random(1, 999)) % 1000
SELECT user_id FROM sessions WHERE token_hash = sha256(('bench' || :a)::bytea) AND expires_at > now();
SELECT id AS sender FROM users WHERE username = 'rtfcg_' || :a \gset
SELECT id AS recipient FROM users WHERE username = 'rtfcg_' || :b \gset
BEGIN;
INSERT INTO messages (sender_id, recipient_id, client_id, kind, nonce, ciphertext, sig)
  VALUES (:sender, :recipient, gen_random_uuid(), 'text', 'AAAAAAAAAAAAAAAA', 'GsGV/ixlYeWm6tEX5bCp51RSM6dXswTx0ljs5c10/ulo2Qd6gf/yJ4BiSkwCLGVXC001EE0d9ATzp29PVrBLJExMrYlogIPAfGpFfTfMcEkCwnKfyqSojtL4Z4vYh1nAtlRufWfh2762M2iFGU8EoUTuFnEqy9KeufaScelU/4k=', '5vimXouBn62At4hQvIV3CzV5GrMhevHAYjyiT/bHuSbGfrQlXN/9fOErsW3M5GRjEn7aIZV7BHsxUy3OBwsL9VqzPZV4QroDmhSDKG3rLnXUJHqA5lPP6BvrXFDRQ5cxU76o6+60dmuup6g/fAbn/+xc5jKiCNLfVEyWgsuTxRYKL6MXCwrV8eqG7t+tf1Hb1eQYSj6LfuD2d8alRxd5MkScSonywLI8Exf00loNlw23Yp8DBThh24E3AaOCf7c3hTN16mbeNqCVT8H1y5tM0T4tIgNkJA3+76BT3LypNVXe65rFhofDqJ/f1n7OjChaO5+3YmPSL9xrXHjcQ3kUjQ==')
  ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id AS message \gset
INSERT INTO message_keys (message_id, user_id, wrapped_key)
  VALUES (:message, :sender, 'SosMGpT5s4pvcFnegZH3RaA2Z85+w972QHOhYx78PFpdUVadBRKwOtquXG/LbhMcBEBYIwBxkuSpjzo8us7h8PkuQLV6sYBtaTDNaHBD9OP7uv24HWATw7FgySiqkizIqQK5JN68WmYjmyGyoG/i78H7vwsdLKlCMPrqf6nMqc9+bGDHWhN/D5mJ1+sFvXbYyGR8LsyyGI642Y491wTZijSDI8lUMNW1OzLGPGEjrBBTtuvpaO8NaXrdzgyS21ztkRP7t5b5HdIT4nEZXpNHjuLoiaIv5w6SFqt3SHMH+p8I/3HeRXpiYhMJrnmzrqCjZeBwozSclmIxvCIjYYCEhQ=='), (:message, :recipient, 'SosMGpT5s4pvcFnegZH3RaA2Z85+w972QHOhYx78PFpdUVadBRKwOtquXG/LbhMcBEBYIwBxkuSpjzo8us7h8PkuQLV6sYBtaTDNaHBD9OP7uv24HWATw7FgySiqkizIqQK5JN68WmYjmyGyoG/i78H7vwsdLKlCMPrqf6nMqc9+bGDHWhN/D5mJ1+sFvXbYyGR8LsyyGI642Y491wTZijSDI8lUMNW1OzLGPGEjrBBTtuvpaO8NaXrdzgyS21ztkRP7t5b5HdIT4nEZXpNHjuLoiaIv5w6SFqt3SHMH+p8I/3HeRXpiYhMJrnmzrqCjZeBwozSclmIxvCIjYYCEhQ==');
UPDATE inboxes SET last_seq = last_seq + 1 WHERE user_id = :recipient RETURNING last_seq \gset
INSERT INTO inbox_events (user_id, seq, message_id) VALUES (:recipient, :last_seq, :message);
SELECT pg_notify('fastchat_bench', :recipient::text);
COMMIT;
SELECT e.seq, m.id, su.username, m.kind, m.client_id, m.sent_at, m.nonce, m.ciphertext, m.sig, k.wrapped_key
  FROM inbox_events e JOIN messages m ON m.id = e.message_id
  JOIN message_keys k ON k.message_id = m.id AND k.user_id = e.user_id
  JOIN users su ON su.id = m.sender_id
 WHERE e.user_id = :recipient AND e.seq > :last_seq - 1 ORDER BY e.seq;
