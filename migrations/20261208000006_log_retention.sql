-- Retention of the stored system log (see the `purge_logs` kind): lines older than 30
-- days go nightly; the audit log is kept whole unless an admin adds `audit_days`.
CREATE INDEX logs_time_idx ON logs (at);

INSERT INTO schedules (id, name, description, kind, payload, cron_expr, cron_timezone, enabled) VALUES
    ('00000000-0000-7000-8000-000000000031', 'purge-old-logs',
     'Delete system-log lines older than 30 days (add audit_days to bound the audit log too)',
     'purge_logs', '{"logs_days": 30}', '50 3 * * *', 'UTC', true);
