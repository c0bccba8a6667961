-- When a `retrying` job's delayed message is due back; the relay republishes it if it
-- has not come back well after that (a lost dead-lettered message).
ALTER TABLE jobs ADD COLUMN retry_at timestamptz;
CREATE INDEX jobs_retrying_idx ON jobs (retry_at) WHERE state = 'retrying';

-- Deleting jobs cascades to their dead letters; requeueing updates them by job.
CREATE INDEX dead_letters_job_idx ON dead_letters (job_id) WHERE job_id IS NOT NULL;
