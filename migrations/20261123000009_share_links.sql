-- Links that let someone without an account watch one clip's proxy: expiring,
-- optionally password-protected, counted, revocable. The token is stored hashed.
CREATE TABLE share_links (
    id             uuid PRIMARY KEY,
    clip_id        uuid        NOT NULL REFERENCES clips (id) ON DELETE CASCADE,
    token_hash     bytea       NOT NULL UNIQUE,
    password_hash  text,
    expires_at     timestamptz NOT NULL,
    views          integer     NOT NULL DEFAULT 0,
    revoked_at     timestamptz,
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX share_links_clip_idx ON share_links (clip_id);
