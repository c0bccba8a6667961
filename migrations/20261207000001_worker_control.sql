-- Worker control from the admin. An admin may ask a worker to stop — `drain`: take no
-- more jobs, finish those it runs, exit 0 (its supervisor starts a fresh one); or
-- `restart`: stop as on SIGTERM (its grace period, then the rest go back) — and may
-- set how many slots it runs per queue without a restart. The worker reads both at
-- every heartbeat and on a notification; `queues` and `slots` say what is in force.
ALTER TABLE workers
    ADD COLUMN stop_requested    text CHECK (stop_requested IN ('drain', 'restart')),
    ADD COLUMN stop_requested_at timestamptz,
    ADD COLUMN slots_wanted      jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(slots_wanted) = 'object');
