-- Every request's session is looked up by its token's hash. Written as
-- `token_hash = ANY (hashes) AND expires_at > now()`, the generic plan that a fresh
-- database's statistics gave went by the expiry index instead, reading every live
-- session on every lookup (0.16 ms with 1,000 sessions, and growing with them). Joined
-- to the hashes themselves, each is found by its key, whatever the statistics say.

CREATE OR REPLACE FUNCTION fastchat_find_live_sessions(hashes BYTEA[])
RETURNS TABLE (token_hash BYTEA, user_id BIGINT, username TEXT, expires_at TIMESTAMPTZ)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.token_hash, u.id, u.username, s.expires_at
      FROM unnest(hashes) AS h(hash)
      JOIN sessions s ON s.token_hash = h.hash
      JOIN users u ON u.id = s.user_id
     WHERE s.expires_at > now();
END
$$;
