-- Archived productions disappear for everyone but admins (who pass no user here): a
-- user's groups and ownership no longer show them, and no policy holds on them, until
-- they are unarchived. Every earlier rule stays.
CREATE OR REPLACE FUNCTION visible_productions(uid uuid) RETURNS TABLE (production_id uuid)
LANGUAGE sql STABLE AS $$
    SELECT gp.production_id
    FROM group_productions gp
    JOIN group_members gm ON gm.group_id = gp.group_id
    JOIN productions p ON p.id = gp.production_id
    WHERE gm.user_id = uid AND NOT p.archived
    UNION
    SELECT p.id FROM productions p WHERE p.owner_id = uid AND NOT p.archived
$$;

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
    WHERE NOT EXISTS (SELECT 1 FROM productions a WHERE a.id = pid AND a.archived)
$$;
