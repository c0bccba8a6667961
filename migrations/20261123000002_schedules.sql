-- The scheduler: schedules stored in PostgreSQL (the django-celery-beat model), and the
-- due time each scheduled job was fired for.

CREATE TABLE schedules (
    id               uuid PRIMARY KEY,
    name             text        NOT NULL UNIQUE CHECK (name <> ''),
    description      text        NOT NULL DEFAULT '',
    kind             text        NOT NULL,
    payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- NULL: the job kind's default priority.
    priority         smallint    CHECK (priority BETWEEN 0 AND 100),
    -- Exactly one timing: cron (5 or 6 fields, IANA zone), interval, or one clocked instant.
    cron_expr        text,
    cron_timezone    text,
    interval_every   bigint      CHECK (interval_every > 0),
    interval_period  text        CHECK (interval_period IN ('seconds', 'minutes', 'hours', 'days')),
    clocked_at       timestamptz,
    enabled          boolean     NOT NULL DEFAULT true,
    one_off          boolean     NOT NULL DEFAULT false,
    start_time       timestamptz,
    expires          timestamptz,
    -- What to do with fires missed while no scheduler ran: skip them, or run once.
    missed           text        NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'run_once')),
    last_run_at      timestamptz,
    total_run_count  bigint      NOT NULL DEFAULT 0,
    -- The due time of the next fire; NULL when none (disabled, expired, done) or not yet computed.
    next_run_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every edit (never by a fire): edits are announced to the scheduler.
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(cron_expr, interval_every, clocked_at) = 1),
    CHECK ((cron_expr IS NULL) = (cron_timezone IS NULL)),
    CHECK ((interval_every IS NULL) = (interval_period IS NULL))
);

CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled;
CREATE INDEX schedules_kind_idx ON schedules (kind);

-- A scheduled job remembers the due time it was fired for; one job per due time.
ALTER TABLE jobs ADD COLUMN scheduled_for timestamptz;
CREATE UNIQUE INDEX jobs_schedule_due_idx ON jobs (schedule_id, scheduled_for) WHERE scheduled_for IS NOT NULL;

-- Edits (and creations, deletions) are announced on `rushes_schedules` with the id.
CREATE FUNCTION rushes_schedule_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rushes_schedules', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER schedules_created_or_deleted AFTER INSERT OR DELETE ON schedules
    FOR EACH ROW EXECUTE FUNCTION rushes_schedule_changed();
CREATE TRIGGER schedules_edited AFTER UPDATE ON schedules
    FOR EACH ROW WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION rushes_schedule_changed();

-- Defaults an admin sees and can change. Scanning waits for its job kind (the media
-- work) and for an admin to enable it.
INSERT INTO schedules (id, name, description, kind, payload, interval_every, interval_period, enabled) VALUES
    ('00000000-0000-7000-8000-000000000001', 'scan-active-productions',
     'Scan every active production for new and changed clips', 'scan_all', '{}', 1, 'hours', false),
    ('00000000-0000-7000-8000-000000000003', 'reap-silent-workers',
     'Mark workers whose heartbeat stopped as gone', 'reap_workers', '{"silent_for_s": 300}', 1, 'minutes', true);
INSERT INTO schedules (id, name, description, kind, payload, cron_expr, cron_timezone, enabled) VALUES
    ('00000000-0000-7000-8000-000000000002', 'purge-finished-jobs',
     'Delete finished job rows older than 30 days', 'purge_jobs', '{"older_than_days": 30}', '30 3 * * *', 'UTC', true);
