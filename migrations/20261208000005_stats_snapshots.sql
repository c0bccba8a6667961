-- Daily figures kept apart from the rows they count, so that history outlives job
-- purges and deletions (the `snapshot_stats` kind writes them, nightly by default).
CREATE TABLE stats_daily (
    day                date        PRIMARY KEY,
    users_total        integer     NOT NULL,
    users_added        integer     NOT NULL,
    active_users       integer     NOT NULL,
    logins             integer     NOT NULL,
    failed_logins      integer     NOT NULL,
    clips_total        integer     NOT NULL,
    clips_found        integer     NOT NULL,
    hours_transcoded   double precision NOT NULL,
    hours_transcribed  double precision NOT NULL,
    -- {"transcode": {"succeeded": 12, "failed": 1}, …}: jobs finished that day.
    jobs               jsonb       NOT NULL CHECK (jsonb_typeof(jobs) = 'object'),
    taken_at           timestamptz NOT NULL DEFAULT now()
);

-- Per production and day: how many of the users who signed in that day could see it
-- (the project admin system's login graphs).
CREATE TABLE stats_production_daily (
    day            date    NOT NULL,
    production_id  uuid    NOT NULL REFERENCES productions (id) ON DELETE CASCADE,
    active_users   integer NOT NULL,
    PRIMARY KEY (production_id, day)
);

INSERT INTO schedules (id, name, description, kind, payload, cron_expr, cron_timezone, enabled) VALUES
    ('00000000-0000-7000-8000-000000000030', 'snapshot-daily-stats',
     'Record yesterday''s figures (users, logins, clips, hours, jobs by kind and outcome, active users per production)',
     'snapshot_stats', '{}', '15 0 * * *', 'UTC', true);
