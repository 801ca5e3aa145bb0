-- Accounts and sessions. Passwords are bcrypt hashes of what the client sends (for the
-- fastchat CLI, a key derived from the password, never the password itself); session
-- tokens are kept only as their SHA-256.
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_]{3,32}$'),
    password_hash TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    key_backup    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Prefix search (`GET /v1/users?prefix=`) whatever the database's collation.
CREATE INDEX users_username_prefix ON users (username text_pattern_ops);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Failed logins per attempted username, shared by every api server.
CREATE TABLE login_failures (
    username     TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ
);
