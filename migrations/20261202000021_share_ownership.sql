-- Share links that stay under control: owned by an account, made only with the `share`
-- policy, served only while their maker still may share.

-- Share links belong to the account that made them (the name stays for display). A
-- link without an owner was made with the bootstrap admin token (`created_by` =
-- 'admin', a name no user may take).
ALTER TABLE share_links ADD COLUMN created_by_id uuid REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX share_links_creator_idx ON share_links (created_by_id) WHERE created_by_id IS NOT NULL;

UPDATE share_links s SET created_by_id = u.id FROM users u WHERE u.username = s.created_by;

-- Links whose maker is gone, deactivated or deleted stop now.
UPDATE share_links s SET revoked_at = now()
WHERE s.revoked_at IS NULL
  AND ((s.created_by_id IS NULL AND s.created_by <> 'admin')
       OR EXISTS (SELECT 1 FROM users u WHERE u.id = s.created_by_id AND (NOT u.active OR u.deleted_at IS NOT NULL)));

-- Making a share link is a policy of its own; the built-in editor and operator roles carry it.
UPDATE roles SET policies = array_append(policies, 'share')
WHERE id IN ('00000000-0000-7000-8000-0000000000a2', '00000000-0000-7000-8000-0000000000a3')
  AND NOT ('share' = ANY (policies));

-- Whether a user may share what a production holds right now: active, not deleted, and
-- an admin (flag or `hub`) or holding both `view` and `share` on it. A link is served
-- only while its maker still may.
CREATE FUNCTION may_share(uid uuid, pid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM users u
        WHERE u.id = uid AND u.active AND u.deleted_at IS NULL
          AND (u.is_admin
               OR EXISTS (SELECT 1 FROM group_members gm JOIN groups g ON g.id = gm.group_id
                          WHERE gm.user_id = u.id AND g.name = 'hub')
               OR (pid IS NOT NULL AND user_policies(u.id, pid) @> ARRAY['view', 'share'])))
$$;
