-- A production's watermark, burned into the picture of the proxies made while it is
-- set: {"text", "position", "opacity", "size"} (checked by the API). NULL: none.
ALTER TABLE productions
    ADD COLUMN watermark jsonb CHECK (watermark IS NULL OR jsonb_typeof(watermark) = 'object');
