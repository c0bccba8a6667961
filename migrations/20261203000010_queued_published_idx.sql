-- The relay's look for queued jobs whose message the broker may have lost (a purged
-- queue, a lost node): per queue, the oldest published jobs that no worker has claimed.
CREATE INDEX jobs_queued_published_idx ON jobs (queue, published_at)
    WHERE state = 'queued' AND published_at IS NOT NULL;
