-- A job whose clip, upload or transcript is deleted has nothing left to work on: it is
-- cancelled in the same transaction as the delete, whichever path deletes the row (an
-- API call, a production's cascade), and a running one is told to stop through the
-- channel workers listen on (`rushes_common::db::CANCEL_CHANNEL`). One statement per
-- deleting statement, so deleting a production with a million clips stays one pass.
--
-- The trigger's argument names the column that holds the row's current job, and what
-- the row is, for the job's error.
CREATE FUNCTION cancel_jobs_of_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'WITH cancelled AS (
             UPDATE jobs SET state = ''cancelled'', finished_at = now(), heartbeat_at = NULL,
                             error = %L
             WHERE id IN (SELECT %I FROM gone) AND state IN (''queued'', ''retrying'', ''running'')
             RETURNING id)
         SELECT count(pg_notify(''rushes_job_cancel'', id::text)) FROM cancelled',
        'its ' || TG_ARGV[1] || ' was deleted', TG_ARGV[0]);
    RETURN NULL;
END $$;

CREATE TRIGGER clips_cancel_jobs AFTER DELETE ON clips
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION cancel_jobs_of_deleted('transcode_job_id', 'clip');

CREATE TRIGGER uploads_cancel_jobs AFTER DELETE ON uploads
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION cancel_jobs_of_deleted('transcode_job_id', 'upload');

CREATE TRIGGER transcripts_cancel_jobs AFTER DELETE ON transcripts
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION cancel_jobs_of_deleted('job_id', 'transcript');
