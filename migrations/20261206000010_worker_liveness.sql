-- A running worker holds a session-level advisory lock keyed by its id, in a database
-- session of its own, for as long as it lives. When its process dies, PostgreSQL ends
-- that session and the lock goes at once, whereas its jobs' heartbeats only go stale
-- after the lease. A claim of a job whose holder is gone need not wait for the lease.
-- A host that falls silent (its network gone) keeps its session open until TCP gives
-- up, so it still counts as alive and its jobs still wait for the stale lease.

-- Workers that hold the lock say so; a worker of an older build never took one and
-- must not be taken for dead because its lock is missing.
ALTER TABLE workers ADD COLUMN liveness_lock boolean NOT NULL DEFAULT false;

-- The lock's key: the low 64 bits of the worker's id (the random bits of a UUIDv7).
CREATE FUNCTION worker_lock_key(worker uuid) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ('x' || right(replace(worker::text, '-', ''), 16))::bit(64)::bigint;

-- True when `worker` took a liveness lock and no session holds it any more. The probe
-- is a shared lock for the rest of the caller's transaction: shared locks never block
-- one another, only the worker's own exclusive one makes it fail.
CREATE FUNCTION worker_gone(worker uuid) RETURNS boolean
    LANGUAGE sql VOLATILE STRICT
    RETURN EXISTS (SELECT 1 FROM workers w WHERE w.id = worker AND w.liveness_lock)
       AND pg_try_advisory_xact_lock_shared(worker_lock_key(worker));
