-- Back to failures counted per username after the check, and sessions without expiry.
DROP TRIGGER sessions_ended ON sessions;
DROP FUNCTION fastchat_session_ended();
DROP INDEX blobs_uploader_created;
DROP FUNCTION fastchat_login_succeeded(TEXT, TEXT);
DROP FUNCTION fastchat_login_attempt(TEXT, TEXT, BIGINT, BIGINT, INTEGER, INTEGER);
DROP TABLE address_attempts;
DROP TABLE login_attempts;
CREATE TABLE login_failures (
    username     TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ
);
DROP FUNCTION fastchat_find_live_sessions(BYTEA[]);
CREATE FUNCTION fastchat_find_sessions(hashes BYTEA[])
RETURNS TABLE (token_hash BYTEA, user_id BIGINT, username TEXT) LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.token_hash, u.id, u.username
      FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.token_hash = ANY (hashes) AND s.expires_at > now();
END
$$;
