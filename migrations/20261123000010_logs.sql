-- Stored log lines: each job's own lines (job_id set) and the system log (service start
-- and stop, leadership, schedule fires, errors).
CREATE TABLE logs (
    id       uuid PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    level    text        NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    service  text        NOT NULL,
    job_id   uuid,
    message  text        NOT NULL,
    fields   jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX logs_at_idx ON logs (id DESC);
CREATE INDEX logs_job_idx ON logs (job_id, id) WHERE job_id IS NOT NULL;
CREATE INDEX logs_level_idx ON logs (level, id DESC) WHERE level IN ('warn', 'error');
