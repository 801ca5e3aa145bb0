INSERT INTO users (username, password_hash, public_key)
  SELECT 'pgbench_' || i, 'not a hash', 'not a key' FROM generate_series(0, 999) AS i
  ON CONFLICT (username) DO NOTHING;
INSERT INTO inboxes (user_id)
  SELECT id FROM users WHERE username LIKE 'pgbench\_%' ON CONFLICT DO NOTHING;
INSERT INTO sessions (token_hash, user_id, expires_at)
  SELECT sha256(('pgbench' || substr(username, 9))::bytea), id, now() + interval '1 day'
    FROM users WHERE username LIKE 'pgbench\_%'
  ON CONFLICT DO NOTHING;
