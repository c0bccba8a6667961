-- An admin's first morning with the fleet: why a queue is paused, who cancelled or
-- retried a job and what each failed attempt said, dead letters resolved without a
-- re-run, the bootstrap token told apart from users in the audit trail, jobs found by
-- what they work on, and dashboard counts told when clips or transcripts change.

-- Why a queue was paused (optional, in the pauser's words).
ALTER TABLE queue_pauses ADD COLUMN reason text;

-- Who cancelled or last retried a job, and its story: each attempt that ended in an
-- error and each admin action, oldest first, as {"at", "event", "attempt", "error"?,
-- "by"?, "state"?} (a retry clears `error`; the history keeps it).
ALTER TABLE jobs
    ADD COLUMN cancelled_by text,
    ADD COLUMN retried_by text,
    ADD COLUMN history jsonb NOT NULL DEFAULT '[]'::jsonb;

-- What a job works on: the id its payload names (a clip, upload, transcript,
-- production, group or mail draft), for `GET /jobs?clip_id=` and `?production_id=`.
CREATE FUNCTION job_target(payload jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(payload->>'clip_id', payload->>'upload_id', payload->>'transcript_id',
                    payload->>'production_id', payload->>'group_id', payload->>'draft_id')
$$;
CREATE INDEX jobs_target_idx ON jobs (job_target(payload), id DESC) WHERE job_target(payload) IS NOT NULL;

-- A dead letter: the attempt that died (the job's `attempts` then), who requeued it,
-- and a letter resolved without a re-run (discarded: the job stays dead).
ALTER TABLE dead_letters
    ADD COLUMN attempt integer,
    ADD COLUMN requeued_by text,
    ADD COLUMN discarded_at timestamptz,
    ADD COLUMN discarded_by text;
UPDATE dead_letters d SET attempt = j.attempts
FROM jobs j WHERE j.id = d.job_id AND j.state = 'dead' AND d.requeued_at IS NULL;
CREATE INDEX dead_letters_unresolved_idx ON dead_letters (id DESC)
    WHERE requeued_at IS NULL AND discarded_at IS NULL;

-- Who acted: a user, the bootstrap token (actor `admin`, a name no user may take), or
-- a job acting for its requester (bulk account jobs).
ALTER TABLE audit_log ADD COLUMN actor_type text NOT NULL DEFAULT 'user'
    CHECK (actor_type IN ('user', 'bootstrap_token', 'job'));
UPDATE audit_log SET actor_type = 'job'
WHERE actor_id IS NULL AND request_id IN (SELECT id FROM jobs);
UPDATE audit_log SET actor_type = 'bootstrap_token'
WHERE actor_id IS NULL AND actor_type = 'user' AND actor = 'admin';
CREATE INDEX audit_log_actor_idx ON audit_log (lower(actor), id DESC);

-- The dashboard caches its clip and transcript counts until one of them changes: every
-- statement that may change a count tells the control planes (one notification per
-- transaction, however many rows).
CREATE FUNCTION notify_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rushes_counts_changed', '');
    RETURN NULL;
END $$;

CREATE TRIGGER clips_counts_changed
    AFTER INSERT OR DELETE OR UPDATE OF transcode_state, missing ON clips
    FOR EACH STATEMENT EXECUTE FUNCTION notify_counts_changed();

CREATE TRIGGER transcripts_counts_changed
    AFTER INSERT OR DELETE OR UPDATE OF state, clip_id ON transcripts
    FOR EACH STATEMENT EXECUTE FUNCTION notify_counts_changed();
