-- Clips, uploads and transcripts follow their current job's state through a column the
-- job store sets at insert from the catalogue (`Follows::mirror`), not through triggers
-- keyed on kind names: renaming a kind can no longer silently stop the mirroring.
-- `jobs.mirror` names the table whose row (the one pointing at the job) follows it.
ALTER TABLE jobs ADD COLUMN mirror text CHECK (mirror IN ('clips', 'uploads', 'transcripts'));

-- Rows enqueued before this migration: the kinds that followed until now. The last
-- place a kind name appears in SQL, as history.
UPDATE jobs SET mirror = CASE kind
        WHEN 'transcode' THEN 'clips'
        WHEN 'transcode_upload' THEN 'uploads'
        WHEN 'transcribe' THEN 'transcripts' END
WHERE kind IN ('transcode', 'transcode_upload', 'transcribe');

DROP TRIGGER jobs_transcode_state ON jobs;
DROP TRIGGER jobs_transcode_upload_state ON jobs;
DROP TRIGGER jobs_transcribe_state ON jobs;

DROP FUNCTION clips_follow_transcode_job();
DROP FUNCTION uploads_follow_transcode_job();
DROP FUNCTION transcripts_follow_transcribe_job();

-- One trigger for every mirrored table, a branch per `jobs.mirror` value, whoever moves
-- the job (worker outcome, cancel, retry, reaper). The row is the one whose current job
-- this is; an upload sent for transcription whose transcode fails or is cancelled
-- takes its waiting transcript with it.
CREATE FUNCTION jobs_mirror_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    CASE NEW.mirror
    WHEN 'clips' THEN
        UPDATE clips SET
            transcode_state = transcode_state_of(NEW.state),
            transcode_error = CASE WHEN NEW.state IN ('failed', 'dead') THEN NEW.error END
        WHERE transcode_job_id = NEW.id;
    WHEN 'uploads' THEN
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
    WHEN 'transcripts' THEN
        UPDATE transcripts SET
            state = transcode_state_of(NEW.state),
            error = CASE WHEN NEW.state IN ('failed', 'dead') THEN NEW.error END
        WHERE job_id = NEW.id;
    END CASE;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_mirror_state AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.mirror IS NOT NULL AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION jobs_mirror_state();
