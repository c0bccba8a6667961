-- Who may change whom: the rules every path that creates, edits or grants accounts
-- shares (the control plane's routes and the worker's CSV import), kept here once.

-- An admin: the flag, or membership of `hub`.
CREATE FUNCTION user_is_admin(uid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM users WHERE id = uid AND is_admin)
        OR EXISTS (SELECT 1 FROM group_members gm JOIN groups g ON g.id = gm.group_id
                   WHERE gm.user_id = uid AND g.name = 'hub')
$$;

-- Whether `actor` (NULL: the bootstrap admin token) may add members to group `gid`.
-- Admins may add to any group. Anyone else may not grant more than they hold: not
-- `hub`, not a group whose roles carry a policy the actor lacks at that role's scope,
-- not a group that grants a production the actor cannot see.
CREATE FUNCTION may_grant_group(actor uuid, gid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT actor IS NULL OR user_is_admin(actor) OR (
        EXISTS (SELECT 1 FROM groups WHERE id = gid AND name <> 'hub')
        AND NOT EXISTS (
            SELECT 1 FROM group_roles gr JOIN roles r ON r.id = gr.role_id
            WHERE gr.group_id = gid
              AND NOT r.policies <@ user_policies(actor, CASE WHEN gr.scope_type = 'production' THEN gr.scope_id END))
        AND NOT EXISTS (
            SELECT 1 FROM group_productions gp
            WHERE gp.group_id = gid
              AND gp.production_id NOT IN (SELECT production_id FROM visible_productions(actor)))
    )
$$;

-- Usernames are unique whatever their case (`Ana` and `ana` are one person to a reader).
CREATE UNIQUE INDEX users_username_lower_idx ON users (lower(username));

-- Personal API tokens created before tokens had a default lifetime expire a year on.
UPDATE tokens SET expires_at = created_at + interval '365 days'
    WHERE kind = 'api' AND expires_at IS NULL AND revoked_at IS NULL;
