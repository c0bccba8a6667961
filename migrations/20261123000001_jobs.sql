-- The job fleet core: jobs, workers, paused queues and parked (dead-lettered) messages.

CREATE TYPE job_state AS ENUM ('queued', 'running', 'succeeded', 'failed', 'retrying', 'cancelled', 'dead');

CREATE TABLE jobs (
    id            uuid PRIMARY KEY,
    kind          text        NOT NULL,
    queue         text        NOT NULL,
    payload       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority      smallint    NOT NULL DEFAULT 20 CHECK (priority BETWEEN 0 AND 100),
    state         job_state   NOT NULL DEFAULT 'queued',
    attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  integer     NOT NULL CHECK (max_attempts >= 1),
    progress      real        NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    error         text,
    result        jsonb,
    worker_id     uuid,
    heartbeat_at  timestamptz,
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    -- When the message was last confirmed by the broker; NULL = committed but not yet published.
    published_at  timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    schedule_id   uuid,
    parent_id     uuid REFERENCES jobs (id) ON DELETE SET NULL,
    requested_by  text
);

-- Ids are UUIDv7 (time-ordered): lists page by id, newest first.
CREATE INDEX jobs_kind_idx ON jobs (kind, id DESC);
CREATE INDEX jobs_schedule_idx ON jobs (schedule_id, id DESC) WHERE schedule_id IS NOT NULL;
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_parent_idx ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_unpublished_idx ON jobs (enqueued_at) WHERE published_at IS NULL AND state = 'queued';
CREATE INDEX jobs_running_idx ON jobs (heartbeat_at) WHERE state = 'running';
CREATE INDEX jobs_active_state_idx ON jobs (state, queue) WHERE state IN ('queued', 'running', 'retrying');

CREATE TABLE workers (
    id            uuid PRIMARY KEY,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    version       text        NOT NULL,
    -- {"maintenance": 2, "scan": 1}: slots per queue family.
    queues        jsonb       NOT NULL,
    slots         integer     NOT NULL,
    gpus          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

CREATE INDEX workers_seen_idx ON workers (last_seen_at DESC);

CREATE TABLE queue_pauses (
    queue      text PRIMARY KEY,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    paused_by  text
);

CREATE TABLE dead_letters (
    id           uuid PRIMARY KEY,
    queue        text        NOT NULL,
    job_id       uuid REFERENCES jobs (id) ON DELETE CASCADE,
    kind         text,
    reason       text        NOT NULL,
    body         bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    dead_at      timestamptz NOT NULL DEFAULT now(),
    requeued_at  timestamptz
);

CREATE INDEX dead_letters_open_idx ON dead_letters (dead_at DESC) WHERE requeued_at IS NULL;
