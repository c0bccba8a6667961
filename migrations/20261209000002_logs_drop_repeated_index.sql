-- `logs_at_idx` (id DESC) repeats the primary key's index: a B-tree is read backwards
-- as well as forwards, so `ORDER BY id DESC` (the log pages, newest first) scans the
-- key's index. Every job stores a line when it ends: one index entry less per job.
DROP INDEX logs_at_idx;
