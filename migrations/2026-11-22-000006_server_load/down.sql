ALTER TABLE servers DROP COLUMN open_streams;
