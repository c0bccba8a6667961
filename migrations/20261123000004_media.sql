-- Productions and their clips: who owns what, where the rushes are, what a scan found
-- and what transcoding made of it.

-- Accounts are fleshed out by identity and access; productions and mails need them now.
CREATE TABLE users (
    id          uuid PRIMARY KEY,
    username    text        NOT NULL UNIQUE,
    email       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE groups (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- "Game of Thrones": holds its series; creating one creates its namesake group.
CREATE TABLE base_productions (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL UNIQUE CHECK (name <> ''),
    group_id    uuid REFERENCES groups (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- "Game of Thrones Series 1": a rushes folder inside the media roots.
CREATE TABLE productions (
    id                  uuid PRIMARY KEY,
    base_production_id  uuid        NOT NULL REFERENCES base_productions (id) ON DELETE RESTRICT,
    series              integer     NOT NULL CHECK (series >= 0),
    friendly_name       text        NOT NULL CHECK (friendly_name <> ''),
    -- Canonical absolute path, checked to be inside a media root when stored.
    path                text        NOT NULL,
    priority            smallint    NOT NULL DEFAULT 20 CHECK (priority BETWEEN 0 AND 100),
    owner_id            uuid REFERENCES users (id) ON DELETE SET NULL,
    active              boolean     NOT NULL DEFAULT true,
    archived            boolean     NOT NULL DEFAULT false,
    cover_image         text,
    -- Order-independent digest of every (path, size, mtime) the last completed scan saw:
    -- an unchanged tree is recognised without reading the clips back.
    tree_digest         bytea,
    last_scan_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (base_production_id, series)
);

CREATE INDEX productions_listed_idx ON productions (base_production_id, series) WHERE NOT archived;

-- Mirrors the state of the clip's current transcode job (see the trigger below).
CREATE TYPE transcode_state AS ENUM ('pending', 'queued', 'running', 'done', 'failed', 'cancelled');

CREATE TABLE clips (
    id                uuid PRIMARY KEY,
    production_id     uuid        NOT NULL REFERENCES productions (id) ON DELETE CASCADE,
    -- Relative to the production's folder, '/'-separated.
    path              text        NOT NULL,
    name              text        NOT NULL,
    -- The card or roll: the folder holding the clip.
    card              text        NOT NULL DEFAULT '',
    shooter           text,
    shoot_date        date,
    hidden            boolean     NOT NULL DEFAULT false,
    size_bytes        bigint      NOT NULL,
    mtime_ns          bigint      NOT NULL,
    missing           boolean     NOT NULL DEFAULT false,
    container         text,
    video_codec       text,
    audio_codec       text,
    width             integer,
    height            integer,
    duration_s        double precision,
    frame_rate_num    integer,
    frame_rate_den    integer,
    start_timecode    text,
    -- Seconds since midnight of the first and last frame's timecode (related-clip overlap).
    tc_start_s        double precision,
    tc_end_s          double precision,
    audio_tracks      integer     NOT NULL DEFAULT 0,
    audio_channels    integer[]   NOT NULL DEFAULT '{}',
    created_on        timestamptz,
    transcode_state   transcode_state NOT NULL DEFAULT 'pending',
    transcode_job_id  uuid,
    transcode_error   text,
    -- File names under the clip's output folder: {"proxy": "proxy.mp4", "tracks": [...], ...}.
    outputs           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    transcoded_at     timestamptz,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (production_id, path)
);

CREATE INDEX clips_production_idx ON clips (production_id, card, name);
CREATE INDEX clips_state_idx ON clips (transcode_state);
CREATE INDEX clips_job_idx ON clips (transcode_job_id) WHERE transcode_job_id IS NOT NULL;
CREATE INDEX clips_shoot_date_idx ON clips (shoot_date, shooter);

-- Files a scan looked at and found not to be media (or unreadable), with the reason:
-- unchanged, they are not opened again.
CREATE TABLE scan_skips (
    production_id  uuid   NOT NULL REFERENCES productions (id) ON DELETE CASCADE,
    path           text   NOT NULL,
    size_bytes     bigint NOT NULL,
    mtime_ns       bigint NOT NULL,
    reason         text   NOT NULL,
    PRIMARY KEY (production_id, path)
);

-- A clip's transcode state follows its current transcode job, whichever process moves
-- the job (worker outcome, cancel, retry, reaper), so the two never disagree.
CREATE FUNCTION clips_follow_transcode_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE clips SET
        transcode_state = CASE NEW.state
            WHEN 'queued' THEN 'queued'
            WHEN 'retrying' THEN 'queued'
            WHEN 'running' THEN 'running'
            WHEN 'succeeded' THEN 'done'
            WHEN 'cancelled' THEN 'cancelled'
            ELSE 'failed' END::transcode_state,
        transcode_error = CASE WHEN NEW.state IN ('failed', 'dead') THEN NEW.error END
    WHERE transcode_job_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_transcode_state AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.kind = 'transcode' AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION clips_follow_transcode_job();

-- What a worker can do beyond its queues (video encoder, hardware decoding).
ALTER TABLE workers ADD COLUMN capabilities jsonb NOT NULL DEFAULT '{}'::jsonb;

-- The default "scan all productions" schedule can run now that the kind exists.
UPDATE schedules SET enabled = true WHERE name = 'scan-active-productions' AND kind = 'scan_all';
