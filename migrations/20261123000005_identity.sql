-- Identity and access: local users with sessions and API tokens, groups granting
-- productions, roles bundling policies, and the audit, login and impersonation logs.

ALTER TABLE users
    ADD COLUMN password_hash  text,
    ADD COLUMN is_admin       boolean NOT NULL DEFAULT false,
    ADD COLUMN active         boolean NOT NULL DEFAULT true,
    ADD COLUMN may_scan       boolean NOT NULL DEFAULT false,
    ADD COLUMN may_transcode  boolean NOT NULL DEFAULT false,
    ADD COLUMN deleted_at     timestamptz,
    ADD COLUMN last_login_at  timestamptz,
    ADD COLUMN last_seen_at   timestamptz;

CREATE UNIQUE INDEX users_email_idx ON users (lower(email)) WHERE deleted_at IS NULL;

-- Bearer tokens: login sessions and personal API tokens, stored as SHA-256 digests.
CREATE TABLE tokens (
    id               uuid PRIMARY KEY,
    user_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             text        NOT NULL CHECK (kind IN ('session', 'api')),
    name             text,
    token_hash       bytea       NOT NULL UNIQUE,
    -- The admin acting as `user_id` (impersonation), if any.
    impersonator_id  uuid REFERENCES users (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    revoked_at       timestamptz,
    last_used_at     timestamptz
);

CREATE INDEX tokens_user_idx ON tokens (user_id) WHERE revoked_at IS NULL;

CREATE TABLE group_members (
    group_id  uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, user_id)
);

CREATE INDEX group_members_user_idx ON group_members (user_id);

-- A group sees the productions granted to it.
CREATE TABLE group_productions (
    group_id       uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    production_id  uuid NOT NULL REFERENCES productions (id) ON DELETE CASCADE,
    granted_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, production_id)
);

CREATE INDEX group_productions_production_idx ON group_productions (production_id);

-- Named bundles of policies (view, download_originals, scan, transcode, transcribe,
-- edit_metadata, manage_tags, manage_users).
CREATE TABLE roles (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    policies    text[]      NOT NULL,
    builtin     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A group carries a role, globally or scoped to one base production or production.
CREATE TABLE group_roles (
    group_id    uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    role_id     uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    scope_type  text NOT NULL CHECK (scope_type IN ('global', 'base_production', 'production')),
    -- NULL for global; otherwise the base production's or production's id.
    scope_id    uuid,
    CHECK ((scope_type = 'global') = (scope_id IS NULL))
);

CREATE UNIQUE INDEX group_roles_unique_idx
    ON group_roles (group_id, role_id, scope_type, COALESCE(scope_id, '00000000-0000-0000-0000-000000000000'));

INSERT INTO roles (id, name, policies, builtin) VALUES
    ('00000000-0000-7000-8000-0000000000a1', 'viewer', '{view}', true),
    ('00000000-0000-7000-8000-0000000000a2', 'editor', '{view,download_originals,edit_metadata,manage_tags}', true),
    ('00000000-0000-7000-8000-0000000000a3', 'operator',
     '{view,download_originals,scan,transcode,transcribe,edit_metadata,manage_tags}', true),
    ('00000000-0000-7000-8000-0000000000a4', 'user-manager', '{manage_users}', true);

-- Members of `hub` are admins.
INSERT INTO groups (id, name) VALUES ('00000000-0000-7000-8000-0000000000b1', 'hub')
    ON CONFLICT (name) DO NOTHING;

-- Every admin change: who, what, before and after; one request's changes share a request_id.
CREATE TABLE audit_log (
    id               uuid PRIMARY KEY,
    request_id       uuid        NOT NULL,
    actor_id         uuid,
    actor            text        NOT NULL,
    impersonator_id  uuid,
    action           text        NOT NULL,
    target_type      text        NOT NULL,
    target_id        text,
    before           jsonb,
    after            jsonb,
    at               timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id, at DESC);

CREATE TABLE login_log (
    id        uuid PRIMARY KEY,
    username  text        NOT NULL,
    user_id   uuid,
    success   boolean     NOT NULL,
    reason    text,
    remote    text,
    at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX login_log_failures_idx ON login_log (lower(username), at DESC) WHERE NOT success;

-- Every impersonated request, and every start and stop.
CREATE TABLE impersonation_log (
    id               uuid PRIMARY KEY,
    impersonator_id  uuid        NOT NULL,
    user_id          uuid        NOT NULL,
    event            text        NOT NULL,
    method           text,
    path             text,
    status           integer,
    at               timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX impersonation_log_at_idx ON impersonation_log (at DESC);

-- The productions a user's groups grant (admins are not special-cased here: callers skip
-- the filter for them).
CREATE FUNCTION visible_productions(uid uuid) RETURNS TABLE (production_id uuid)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT gp.production_id
    FROM group_productions gp JOIN group_members gm ON gm.group_id = gp.group_id
    WHERE gm.user_id = uid
$$;

-- The policies a user holds on a production (NULL: globally): the roles of their groups
-- scoped globally, to the production's base production or to the production, plus
-- `view` where a group grants the production, plus the per-user scan and transcode flags
-- on productions they can see.
CREATE FUNCTION user_policies(uid uuid, pid uuid) RETURNS text[]
LANGUAGE sql STABLE AS $$
    WITH visible AS (
        SELECT pid IS NOT NULL AND pid IN (SELECT production_id FROM visible_productions(uid)) AS yes
    )
    SELECT COALESCE(array_agg(DISTINCT policy ORDER BY policy), '{}') FROM (
        SELECT unnest(r.policies) AS policy
        FROM group_members gm
        JOIN group_roles gr ON gr.group_id = gm.group_id
        JOIN roles r ON r.id = gr.role_id
        LEFT JOIN productions p ON p.id = pid
        WHERE gm.user_id = uid
          AND (gr.scope_type = 'global'
               OR (gr.scope_type = 'production' AND gr.scope_id = pid)
               OR (gr.scope_type = 'base_production' AND gr.scope_id = p.base_production_id))
        UNION ALL SELECT 'view' FROM visible WHERE yes
        UNION ALL SELECT 'scan' FROM users u, visible WHERE u.id = uid AND u.may_scan AND visible.yes
        UNION ALL SELECT 'transcode' FROM users u, visible WHERE u.id = uid AND u.may_transcode AND visible.yes
    ) granted
$$;

-- Single-use, expiring password reset links.
CREATE TABLE password_resets (
    id          uuid PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

-- Invitations by email: pending until accepted (which creates the user), resendable, revocable.
CREATE TABLE invitations (
    id                uuid PRIMARY KEY,
    email             text        NOT NULL,
    group_ids         uuid[]      NOT NULL DEFAULT '{}',
    token_hash        bytea       NOT NULL UNIQUE,
    invited_by        text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    accepted_at       timestamptz,
    accepted_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at        timestamptz
);

CREATE UNIQUE INDEX invitations_pending_idx ON invitations (lower(email))
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
