DROP TABLE presence;
DROP TABLE servers;
