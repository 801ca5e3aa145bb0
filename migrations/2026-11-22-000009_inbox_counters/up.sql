-- Every delivery updates its recipient's inbox counter, so this small table takes an
-- update per message. Room on each page keeps those updates HOT (no new index entries,
-- old versions pruned as pages are read), and vacuuming it as soon as autovacuum looks
-- keeps the dead versions of a busy minute from slowing the next. Measured: after a
-- minute of one-to-one load the counters of 1,000 users carried 48,000 dead versions
-- and delivering a 1,000-member group message took 65 ms instead of 18.
ALTER TABLE inboxes SET (
    fillfactor = 30,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);
