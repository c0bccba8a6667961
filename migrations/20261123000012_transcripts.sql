-- Transcripts: speech of one clip or one upload as timed segments, made by the
-- `transcribe` kind with Whisper. A clip or upload has at most one transcript; a
-- re-transcription replaces its segments when it succeeds. The options live on the row
-- so that any retry or re-transcription runs with the same ones.
CREATE TABLE transcripts (
    id                    uuid PRIMARY KEY,
    clip_id               uuid REFERENCES clips (id) ON DELETE CASCADE,
    upload_id             uuid REFERENCES uploads (id) ON DELETE CASCADE,
    state                 transcode_state NOT NULL DEFAULT 'queued',
    job_id                uuid,
    error                 text,
    -- Options: audio track (0 = the mix of every track, n = that track), language
    -- (NULL = detect), task, prompt.
    audio_track           integer     NOT NULL DEFAULT 0 CHECK (audio_track BETWEEN 0 AND 64),
    language              text,
    task                  text        NOT NULL DEFAULT 'transcribe' CHECK (task IN ('transcribe', 'translate')),
    initial_prompt        text,
    -- What the last successful run found and used.
    model                 text,
    detected_language     text,
    language_probability  real,
    duration_s            double precision,
    real_time_factor      real,
    requested_by          text        NOT NULL,
    -- Who is mailed when it is done (NULL: nobody).
    notify_user_id        uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    transcribed_at        timestamptz,
    edited_at             timestamptz,
    CHECK ((clip_id IS NULL) <> (upload_id IS NULL))
);

CREATE UNIQUE INDEX transcripts_clip_idx ON transcripts (clip_id) WHERE clip_id IS NOT NULL;
CREATE UNIQUE INDEX transcripts_upload_idx ON transcripts (upload_id) WHERE upload_id IS NOT NULL;
CREATE INDEX transcripts_state_idx ON transcripts (state);

CREATE TABLE transcript_segments (
    transcript_id   uuid             NOT NULL REFERENCES transcripts (id) ON DELETE CASCADE,
    idx             integer          NOT NULL,
    start_s         double precision NOT NULL,
    end_s           double precision NOT NULL,
    text            text             NOT NULL,
    avg_logprob     real,
    no_speech_prob  real,
    edited          boolean          NOT NULL DEFAULT false,
    -- 'simple' keeps every language searchable (no stemming, no stop words).
    search          tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    PRIMARY KEY (transcript_id, idx),
    CHECK (end_s >= start_s)
);

CREATE INDEX transcript_segments_search_idx ON transcript_segments USING gin (search);

-- A transcript's state is its current job's state, whoever moves it.
CREATE FUNCTION transcripts_follow_transcribe_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE transcripts SET
        state = transcode_state_of(NEW.state),
        error = CASE WHEN NEW.state IN ('failed', 'dead') THEN NEW.error END
    WHERE job_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_transcribe_state AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.kind = 'transcribe' AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION transcripts_follow_transcribe_job();

-- An upload sent for transcription whose transcode fails or is cancelled takes its
-- waiting transcript with it: nobody is left waiting on a transcript that cannot come.
CREATE OR REPLACE FUNCTION uploads_follow_transcode_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE uploads SET
        transcode_state = transcode_state_of(NEW.state),
        transcode_error = CASE WHEN NEW.state IN ('failed', 'dead') THEN NEW.error END
    WHERE transcode_job_id = NEW.id;
    IF NEW.state IN ('failed', 'dead', 'cancelled') THEN
        UPDATE transcripts t SET
            state = transcode_state_of(NEW.state),
            error = 'the upload could not be transcoded: ' || coalesce(NEW.error, NEW.state::text)
        FROM uploads u
        WHERE u.transcode_job_id = NEW.id AND t.upload_id = u.id AND t.job_id IS NULL;
    END IF;
    RETURN NULL;
END $$;

-- Whether a production's clips are transcribed once transcoded (scan → transcode →
-- transcribe); a clip that has a transcript is not transcribed again on a retranscode.
ALTER TABLE productions ADD COLUMN auto_transcribe boolean NOT NULL DEFAULT true;
