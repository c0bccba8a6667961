-- Quick claims (`common/src/job/store/quick.rs`): while a queue's jobs are short, a
-- worker claims a delivered job by a session-level advisory lock keyed by the job's id
-- (`class`, hashtext(id)), in a database session of its own, and writes nothing.
--
-- One call, one round trip: releases the locks of `release` (jobs whose outcome is
-- committed, or that went back unrun), takes the locks of `asked` that no session holds,
-- and returns the rows of the jobs it locked that may run (`queued` or `retrying`). The
-- rows are read after the locks are taken: a VOLATILE function takes a fresh snapshot
-- for each statement, so a job claimed the ordinary way before shows as `running` (and
-- an ordinary claim after cannot take the lock). Every lock taken for a job not returned
-- is released before the call returns.
CREATE FUNCTION claim_quick(class integer, release uuid[], asked uuid[]) RETURNS SETOF jobs
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    locked uuid[];
    claimable jobs[];
BEGIN
    PERFORM pg_advisory_unlock(class, hashtext(id::text)) FROM unnest(release) AS id;
    locked := ARRAY(SELECT id FROM unnest(asked) AS id WHERE pg_try_advisory_lock(class, hashtext(id::text)));
    claimable := ARRAY(SELECT j FROM unnest(locked) AS l(job_id) JOIN jobs AS j ON j.id = l.job_id
                       WHERE j.state IN ('queued', 'retrying'));
    PERFORM pg_advisory_unlock(class, hashtext(id::text)) FROM unnest(locked) AS id
        WHERE id NOT IN (SELECT (c).id FROM unnest(claimable) AS c);
    RETURN QUERY SELECT * FROM unnest(claimable);
END $$;
