-- Running api servers (each heartbeats its row) and who holds an event stream on which.
-- A user is online while a server with a fresh heartbeat holds a stream of theirs, so
-- a server that dies stops counting without anyone cleaning up after it.
CREATE TABLE servers (
    id           UUID PRIMARY KEY,
    address      TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE presence (
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id UUID NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, server_id)
);
CREATE INDEX presence_server ON presence (server_id);
