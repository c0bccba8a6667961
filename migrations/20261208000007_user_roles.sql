-- Roles complete: a role given to a user directly (not only through a group), and the
-- production administrator (the `administer` policy) who manages a production's
-- members without being a global admin.

-- A user carries a role directly, globally or scoped to one base production or
-- production (as `group_roles` does for a group).
CREATE TABLE user_roles (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id     uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    scope_type  text NOT NULL CHECK (scope_type IN ('global', 'base_production', 'production')),
    -- NULL for global; otherwise the base production's or production's id.
    scope_id    uuid,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope_type = 'global') = (scope_id IS NULL))
);

CREATE UNIQUE INDEX user_roles_unique_idx
    ON user_roles (user_id, role_id, scope_type, COALESCE(scope_id, '00000000-0000-0000-0000-000000000000'));
CREATE INDEX user_roles_scope_idx ON user_roles (scope_id) WHERE scope_id IS NOT NULL;
CREATE INDEX group_roles_scope_idx ON group_roles (scope_id) WHERE scope_id IS NOT NULL;

-- Every role a user carries and where: through each of their groups, and directly
-- (`group_id` NULL).
CREATE FUNCTION user_role_assignments(uid uuid)
RETURNS TABLE (role_id uuid, policies text[], scope_type text, scope_id uuid, group_id uuid)
LANGUAGE sql STABLE AS $$
    SELECT r.id, r.policies, gr.scope_type, gr.scope_id, gr.group_id
    FROM group_members gm
    JOIN group_roles gr ON gr.group_id = gm.group_id
    JOIN roles r ON r.id = gr.role_id
    WHERE gm.user_id = uid
    UNION ALL
    SELECT r.id, r.policies, ur.scope_type, ur.scope_id, NULL
    FROM user_roles ur JOIN roles r ON r.id = ur.role_id
    WHERE ur.user_id = uid
$$;

-- A user sees a production that one of their groups is granted, that they own, or on
-- which a role scoped to it (or to its base production) gives them `view`. A global
-- role is what one may do on the productions one sees; it shows none by itself.
-- Archived productions stay hidden from everyone but admins (who pass no user here).
CREATE OR REPLACE FUNCTION visible_productions(uid uuid) RETURNS TABLE (production_id uuid)
LANGUAGE sql STABLE AS $$
    SELECT gp.production_id
    FROM group_productions gp
    JOIN group_members gm ON gm.group_id = gp.group_id
    JOIN productions p ON p.id = gp.production_id
    WHERE gm.user_id = uid AND NOT p.archived
    UNION
    SELECT p.id FROM productions p WHERE p.owner_id = uid AND NOT p.archived
    UNION
    SELECT p.id
    FROM user_role_assignments(uid) a
    JOIN productions p
      ON (a.scope_type = 'production' AND p.id = a.scope_id)
      OR (a.scope_type = 'base_production' AND p.base_production_id = a.scope_id)
    WHERE 'view' = ANY (a.policies) AND NOT p.archived
$$;

-- The policies a user holds on a production (NULL: globally). On a production: only
-- where they see it, the roles in scope (global, its base production, itself; through
-- groups and direct), `view`, and the per-user scan and transcode flags. Globally: the
-- global roles.
CREATE OR REPLACE FUNCTION user_policies(uid uuid, pid uuid) RETURNS text[]
LANGUAGE sql STABLE AS $$
    WITH visible AS (
        SELECT pid IS NOT NULL AND pid IN (SELECT production_id FROM visible_productions(uid)) AS yes
    )
    SELECT COALESCE(array_agg(DISTINCT policy ORDER BY policy), '{}') FROM (
        SELECT unnest(a.policies) AS policy
        FROM user_role_assignments(uid) a
        LEFT JOIN productions p ON p.id = pid
        WHERE (pid IS NULL AND a.scope_type = 'global')
           OR ((SELECT yes FROM visible)
               AND (a.scope_type = 'global'
                    OR (a.scope_type = 'production' AND a.scope_id = pid)
                    OR (a.scope_type = 'base_production' AND a.scope_id = p.base_production_id)))
        UNION ALL SELECT 'view' FROM visible WHERE yes
        UNION ALL SELECT 'scan' FROM users u, visible WHERE u.id = uid AND u.may_scan AND visible.yes
        UNION ALL SELECT 'transcode' FROM users u, visible WHERE u.id = uid AND u.may_transcode AND visible.yes
    ) granted
$$;

-- A role scoped to a production or base production goes with it: it would scope
-- nothing, and a role can never be re-pointed.
CREATE FUNCTION drop_scoped_roles() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM group_roles WHERE scope_type = TG_ARGV[0] AND scope_id = OLD.id;
    DELETE FROM user_roles WHERE scope_type = TG_ARGV[0] AND scope_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER productions_drop_scoped_roles AFTER DELETE ON productions
    FOR EACH ROW EXECUTE FUNCTION drop_scoped_roles('production');
CREATE TRIGGER base_productions_drop_scoped_roles AFTER DELETE ON base_productions
    FOR EACH ROW EXECUTE FUNCTION drop_scoped_roles('base_production');

-- Roles already scoped to something deleted.
DELETE FROM group_roles gr WHERE gr.scope_type = 'production'
    AND NOT EXISTS (SELECT 1 FROM productions p WHERE p.id = gr.scope_id);
DELETE FROM group_roles gr WHERE gr.scope_type = 'base_production'
    AND NOT EXISTS (SELECT 1 FROM base_productions b WHERE b.id = gr.scope_id);

-- The production administrator: everything on the productions in the role's scope,
-- and `administer`: their members and the roles those members hold there.
INSERT INTO roles (id, name, policies, builtin) VALUES
    ('00000000-0000-7000-8000-0000000000a5', 'production-admin',
     '{view,download_originals,scan,transcode,transcribe,edit_metadata,manage_tags,share,administer}', true)
ON CONFLICT (name) DO NOTHING;

-- Whether `actor` (NULL: the bootstrap admin token) may add members to group `gid`:
-- as before, not more than the actor holds. A role the group carries on a base
-- production reaches every production of it, those made later too: only admins give
-- that. (Globally, a role no longer shows productions, so comparing it with the
-- actor's global policies no longer bounds what it shows.)
CREATE OR REPLACE FUNCTION may_grant_group(actor uuid, gid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT actor IS NULL OR user_is_admin(actor) OR (
        EXISTS (SELECT 1 FROM groups WHERE id = gid AND name <> 'hub')
        AND NOT EXISTS (
            SELECT 1 FROM group_roles gr JOIN roles r ON r.id = gr.role_id
            WHERE gr.group_id = gid
              AND (gr.scope_type = 'base_production'
                   OR NOT r.policies <@ user_policies(actor, CASE WHEN gr.scope_type = 'production' THEN gr.scope_id END)))
        AND NOT EXISTS (
            SELECT 1 FROM group_productions gp
            WHERE gp.group_id = gid
              AND gp.production_id NOT IN (SELECT production_id FROM visible_productions(actor)))
    )
$$;
