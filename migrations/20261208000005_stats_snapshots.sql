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

-- The users seen on day `d` (UTC): a successful sign-in that day, or last seen then.
CREATE FUNCTION active_users_of_day(d date) RETURNS TABLE (user_id uuid)
LANGUAGE sql STABLE AS $$
    SELECT l.user_id FROM login_log l
    WHERE l.success AND l.user_id IS NOT NULL AND (l.at AT TIME ZONE 'UTC')::date = d
    UNION
    SELECT u.id FROM users u WHERE (u.last_seen_at AT TIME ZONE 'UTC')::date = d
$$;

-- Day `d`'s figures as the rows there are now count them: what `snapshot_stats`
-- records, and what `GET /stats` shows for a day without a snapshot.
CREATE FUNCTION stats_of_day(d date) RETURNS TABLE (
    users_total bigint, users_added bigint, active_users bigint, logins bigint, failed_logins bigint,
    clips_total bigint, clips_found bigint, hours_transcoded double precision,
    hours_transcribed double precision, jobs jsonb
)
LANGUAGE sql STABLE AS $$
    SELECT
        (SELECT count(*) FROM users u WHERE (u.created_at AT TIME ZONE 'UTC')::date <= d
            AND (u.deleted_at IS NULL OR (u.deleted_at AT TIME ZONE 'UTC')::date > d)),
        (SELECT count(*) FROM users u WHERE (u.created_at AT TIME ZONE 'UTC')::date = d),
        (SELECT count(*) FROM active_users_of_day(d)),
        (SELECT count(*) FROM login_log WHERE success AND (at AT TIME ZONE 'UTC')::date = d),
        (SELECT count(*) FROM login_log WHERE NOT success AND (at AT TIME ZONE 'UTC')::date = d),
        (SELECT count(*) FROM clips c WHERE (c.first_seen_at AT TIME ZONE 'UTC')::date <= d AND NOT c.missing),
        (SELECT count(*) FROM clips c WHERE (c.first_seen_at AT TIME ZONE 'UTC')::date = d),
        COALESCE((SELECT sum(c.duration_s) / 3600 FROM clips c
                  WHERE (c.transcoded_at AT TIME ZONE 'UTC')::date = d), 0)::float8,
        COALESCE((SELECT sum(t.duration_s) / 3600 FROM transcripts t
                  WHERE (t.transcribed_at AT TIME ZONE 'UTC')::date = d), 0)::float8,
        COALESCE((SELECT jsonb_object_agg(kind, outcomes) FROM (
             SELECT kind, jsonb_object_agg(state, n) AS outcomes FROM (
                 SELECT kind, state::text AS state, count(*) AS n FROM jobs
                 WHERE state::text IN ('succeeded', 'failed', 'dead', 'cancelled')
                   AND (finished_at AT TIME ZONE 'UTC')::date = d
                 GROUP BY kind, state) per_state
             GROUP BY kind) per_kind), '{}'::jsonb)
$$;

INSERT INTO schedules (id, name, description, kind, payload, cron_expr, cron_timezone, enabled) VALUES
    ('00000000-0000-7000-8000-000000000030', 'snapshot-daily-stats',
     'Record yesterday''s figures (users, logins, clips, hours, jobs by kind and outcome, active users per production)',
     'snapshot_stats', '{}', '15 0 * * *', 'UTC', true);
