-- Typed admin settings (see common::settings for the keys, types, ranges and defaults);
-- a key absent here has its default.
CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);
