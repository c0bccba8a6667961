-- Files people upload rather than rushes found by a scan: review files (a cut attached
-- to a production, watched and shared) and audio or video sent for transcription that
-- belongs to no production. The file lives under the data directory
-- (`uploads/<id>/original`); the `transcode_upload` kind probes it and makes the same
-- outputs a clip gets (proxy, poster, 16 kHz WAV) beside it.
CREATE TABLE uploads (
    id                uuid PRIMARY KEY,
    purpose           text        NOT NULL CHECK (purpose IN ('review', 'transcription')),
    production_id     uuid REFERENCES productions (id) ON DELETE CASCADE,
    title             text        NOT NULL,
    -- The name it was uploaded under, for display and downloads only.
    file_name         text        NOT NULL,
    size_bytes        bigint      NOT NULL,
    -- What the uploader told us.
    roll              text,
    shooter           text,
    shoot_date        date,
    frame_rate_num    integer,
    frame_rate_den    integer,
    start_timecode    text,
    language          text,
    translate         boolean     NOT NULL DEFAULT false,
    -- What ffprobe found.
    container         text,
    video_codec       text,
    audio_codec       text,
    width             integer,
    height            integer,
    duration_s        double precision,
    audio_tracks      integer     NOT NULL DEFAULT 0,
    transcode_state   transcode_state NOT NULL DEFAULT 'queued',
    transcode_job_id  uuid,
    transcode_error   text,
    outputs           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    transcoded_at     timestamptz,
    -- Who uploaded it: the name for display, the account for ownership (a user deleted
    -- and a new one given the same name must not inherit the uploads).
    uploaded_by       text        NOT NULL,
    uploaded_by_user_id uuid      REFERENCES users (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (purpose = 'transcription' OR production_id IS NOT NULL),
    CHECK ((frame_rate_num IS NULL) = (frame_rate_den IS NULL))
);

CREATE INDEX uploads_production_idx ON uploads (production_id, id DESC) WHERE production_id IS NOT NULL;
CREATE INDEX uploads_purpose_idx ON uploads (purpose, id DESC);
CREATE INDEX uploads_uploader_idx ON uploads (uploaded_by_user_id, id DESC) WHERE uploaded_by_user_id IS NOT NULL;

-- What a job's state means for the thing it makes: one mapping for every table whose
-- state follows its current job (clips, uploads, transcripts).
CREATE FUNCTION transcode_state_of(state job_state) RETURNS transcode_state
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE state
        WHEN 'queued' THEN 'queued'
        WHEN 'retrying' THEN 'queued'
        WHEN 'running' THEN 'running'
        WHEN 'succeeded' THEN 'done'
        WHEN 'cancelled' THEN 'cancelled'
        ELSE 'failed' END::transcode_state
$$;

CREATE OR REPLACE FUNCTION clips_follow_transcode_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE clips SET
        transcode_state = transcode_state_of(NEW.state),
        transcode_error = CASE WHEN NEW.state IN ('failed', 'dead') THEN NEW.error END
    WHERE transcode_job_id = NEW.id;
    RETURN NULL;
END $$;

-- Like clips, an upload's transcode state is its current job's state, whoever moves it.
CREATE FUNCTION uploads_follow_transcode_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE uploads SET
        transcode_state = transcode_state_of(NEW.state),
        transcode_error = CASE WHEN NEW.state IN ('failed', 'dead') THEN NEW.error END
    WHERE transcode_job_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_transcode_upload_state AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.kind = 'transcode_upload' AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION uploads_follow_transcode_job();

-- A share link names one clip or one review file.
ALTER TABLE share_links ALTER COLUMN clip_id DROP NOT NULL;
ALTER TABLE share_links ADD COLUMN upload_id uuid REFERENCES uploads (id) ON DELETE CASCADE;
ALTER TABLE share_links ADD CONSTRAINT share_links_one_target CHECK ((clip_id IS NULL) <> (upload_id IS NULL));
CREATE INDEX share_links_upload_idx ON share_links (upload_id) WHERE upload_id IS NOT NULL;
