-- A share link may be made for a named viewer: it then serves its own proxy, the
-- clip's (or review file's) with the viewer's name burned in, made by a `share_proxy`
-- job (the current one named here); never the unmarked one.
ALTER TABLE share_links ADD COLUMN viewer text
    CHECK (viewer IS NULL OR char_length(viewer) BETWEEN 1 AND 80);
ALTER TABLE share_links ADD COLUMN proxy_job_id uuid;
