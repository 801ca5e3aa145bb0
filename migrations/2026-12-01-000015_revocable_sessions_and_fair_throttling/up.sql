-- Sessions as streams need them (with their expiry, so that a server can end a stream
-- the moment its session expires), and login throttling that holds under parallel
-- guesses and cannot be turned against a name's owner.

-- The live sessions among these token hashes, with their users and expiry.
-- (A new name: servers keep fastchat_find_sessions prepared with its old columns.)
CREATE FUNCTION fastchat_find_live_sessions(hashes BYTEA[])
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
DROP FUNCTION fastchat_find_sessions(BYTEA[]);

-- Login attempts, counted when they are made (before the password is checked, so that
-- guesses made at once all count), per (username, client address) for names that exist,
-- and per client address whatever the name (so that unknown names cost a bounded amount
-- of work and one row per address). Over the limit within the window, that key is
-- refused until `locked_until`; then it starts afresh.
DROP TABLE login_failures;
CREATE TABLE login_attempts (
    username     TEXT NOT NULL,
    address      TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ,
    PRIMARY KEY (username, address)
);
CREATE TABLE address_attempts (
    address      TEXT PRIMARY KEY,
    attempts     INTEGER NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ
);

-- Counts one login attempt and says whether it may go on to the password check, and
-- if not, for how many seconds more it is refused. With it, the user's id and password
-- hash (null for a name no user has). A refused attempt is not counted: hammering a
-- held-back name does not hold it back longer.
CREATE FUNCTION fastchat_login_attempt(
    name TEXT, client TEXT, window_secs BIGINT, lockout_secs BIGINT,
    max_per_name INTEGER, max_per_address INTEGER)
RETURNS TABLE (allowed BOOLEAN, retry_after_secs BIGINT, user_id BIGINT, password_hash TEXT)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    window_length CONSTANT INTERVAL := window_secs * interval '1 second';
    lockout CONSTANT INTERVAL := lockout_secs * interval '1 second';
    found_id BIGINT;
    found_hash TEXT;
    by_address address_attempts;
    by_name login_attempts;
    held_until TIMESTAMPTZ;
BEGIN
    SELECT u.id, u.password_hash INTO found_id, found_hash FROM users u WHERE u.username = name;

    -- The rows exist and are locked, so that attempts made at once count one by one.
    INSERT INTO address_attempts (address, attempts, window_start)
    VALUES (client, 0, now()) ON CONFLICT DO NOTHING;
    SELECT * INTO by_address FROM address_attempts a WHERE a.address = client FOR UPDATE;
    IF found_id IS NOT NULL THEN
        INSERT INTO login_attempts (username, address, attempts, window_start)
        VALUES (name, client, 0, now()) ON CONFLICT DO NOTHING;
        SELECT * INTO by_name FROM login_attempts l
         WHERE l.username = name AND l.address = client FOR UPDATE;
    END IF;

    held_until := greatest(
        CASE WHEN by_address.locked_until > now() THEN by_address.locked_until END,
        CASE WHEN by_name.locked_until > now() THEN by_name.locked_until END);
    IF held_until IS NOT NULL THEN
        RETURN QUERY SELECT false, ceil(extract(epoch FROM held_until - now()))::BIGINT,
                            found_id, found_hash;
        RETURN;
    END IF;

    -- A window that ran out, or a lockout that ended, starts the count afresh.
    UPDATE address_attempts a SET
        attempts = CASE WHEN a.locked_until IS NOT NULL OR a.window_start < now() - window_length
                        THEN 1 ELSE a.attempts + 1 END,
        window_start = CASE WHEN a.locked_until IS NOT NULL OR a.window_start < now() - window_length
                            THEN now() ELSE a.window_start END,
        locked_until = NULL
     WHERE a.address = client
    RETURNING * INTO by_address;
    IF by_address.attempts > max_per_address THEN
        UPDATE address_attempts SET locked_until = now() + lockout WHERE address = client
        RETURNING * INTO by_address;
    END IF;
    IF found_id IS NOT NULL THEN
        UPDATE login_attempts l SET
            attempts = CASE WHEN l.locked_until IS NOT NULL OR l.window_start < now() - window_length
                            THEN 1 ELSE l.attempts + 1 END,
            window_start = CASE WHEN l.locked_until IS NOT NULL OR l.window_start < now() - window_length
                                THEN now() ELSE l.window_start END,
            locked_until = NULL
         WHERE l.username = name AND l.address = client
        RETURNING * INTO by_name;
        IF by_name.attempts > max_per_name THEN
            UPDATE login_attempts SET locked_until = now() + lockout
             WHERE username = name AND address = client
            RETURNING * INTO by_name;
        END IF;
    END IF;

    held_until := greatest(by_address.locked_until, by_name.locked_until);
    RETURN QUERY SELECT held_until IS NULL, ceil(extract(epoch FROM held_until - now()))::BIGINT,
                        found_id, found_hash;
END
$$;

-- A login that succeeded: its name starts afresh from that address, and the address
-- gets its attempt back.
CREATE FUNCTION fastchat_login_succeeded(name TEXT, client TEXT) RETURNS VOID
LANGUAGE sql AS $$
    DELETE FROM login_attempts WHERE username = name AND address = client;
    UPDATE address_attempts SET attempts = greatest(attempts - 1, 0) WHERE address = client;
$$;

-- Per-user upload quotas count a user's recent uploads.
CREATE INDEX blobs_uploader_created ON blobs (uploader_id, created_at);

-- Whatever ends a live session (a logout, an account deleted, its expiry moved into the
-- past), every server is told in the same commit, and ends that session's streams.
-- Sessions that had already expired are not news: each server ends those by the clock.
CREATE FUNCTION fastchat_session_ended() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.expires_at > now() AND (TG_OP = 'DELETE' OR NEW.expires_at <= now()) THEN
        PERFORM pg_notify(fastchat_notification_channel(),
                          'revoke:' || encode(OLD.token_hash, 'hex'));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_ended AFTER DELETE OR UPDATE OF expires_at ON sessions
FOR EACH ROW EXECUTE FUNCTION fastchat_session_ended();
