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
      FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.token_hash = ANY (hashes) AND s.expires_at > now();
END
$$;
