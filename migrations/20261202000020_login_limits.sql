-- Login abuse: counted attempts, and a retention for the login records.

-- Attempt counters behind the login, password-reset and share-password limits: one row
-- per key (`login:account:<name>`, `login:address:<ip>`, `reset:…`, `share:<link id>`),
-- read and written under a row lock so concurrent attempts are counted one by one.
CREATE TABLE throttles (
    key       text PRIMARY KEY,
    attempts  integer     NOT NULL DEFAULT 0,
    last_at   timestamptz
);

CREATE INDEX throttles_last_at_idx ON throttles (last_at);

-- Retention of the login log (see the `purge_logins` kind).
CREATE INDEX login_log_at_idx ON login_log (at);

-- Old login-log rows, used or expired password resets and idle counters go daily.
INSERT INTO schedules (id, name, description, kind, payload, cron_expr, cron_timezone, enabled) VALUES
    ('00000000-0000-7000-8000-000000000020', 'purge-login-records',
     'Delete login-log rows older than 90 days, used or expired password resets after 7 days and idle login counters',
     'purge_logins', '{"login_log_days": 90, "resets_days": 7}', '45 3 * * *', 'UTC', true);
