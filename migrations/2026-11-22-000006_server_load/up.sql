-- Each api server reports its load (open event streams) with its heartbeat.
ALTER TABLE servers ADD COLUMN open_streams INTEGER NOT NULL DEFAULT 0;
