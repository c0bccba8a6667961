-- Skipped files come in two kinds: `broken` (it looks like media — a media extension or
-- media magic bytes — but does not probe, or its container is refused) and `not_media`
-- (nothing about it says media; never probed). Rows recorded before the split are
-- sorted by the one reason a file that was never probed carries.
ALTER TABLE scan_skips ADD COLUMN kind text NOT NULL DEFAULT 'not_media'
    CHECK (kind IN ('broken', 'not_media'));
UPDATE scan_skips SET kind = 'broken' WHERE reason <> 'not a media file';

-- A production's owner sees it (they are mailed its scan summaries). Every earlier
-- rule stays: the productions a user's groups grant.
CREATE OR REPLACE FUNCTION visible_productions(uid uuid) RETURNS TABLE (production_id uuid)
LANGUAGE sql STABLE AS $$
    SELECT gp.production_id
    FROM group_productions gp JOIN group_members gm ON gm.group_id = gp.group_id
    WHERE gm.user_id = uid
    UNION
    SELECT p.id FROM productions p WHERE p.owner_id = uid
$$;

-- The policies a user holds on a production (NULL: globally): the roles of their groups
-- scoped globally, to the production's base production or to the production, plus
-- `view` where a group grants the production or the user owns it, plus the per-user
-- scan and transcode flags on productions they can see.
CREATE OR REPLACE FUNCTION user_policies(uid uuid, pid uuid) RETURNS text[]
LANGUAGE sql STABLE AS $$
    WITH visible AS (
        SELECT pid IS NOT NULL AND (
            pid IN (SELECT production_id FROM visible_productions(uid))
            OR EXISTS (SELECT 1 FROM productions o WHERE o.id = pid AND o.owner_id = uid)
        ) AS yes
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
