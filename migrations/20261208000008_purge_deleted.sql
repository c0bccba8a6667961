-- "Purge deleted items" takes clips and uploads gone long enough: since when a clip's
-- rushes have been missing from storage, and since when an upload's uploader account
-- has been gone (purged: the reference was cleared).

ALTER TABLE clips ADD COLUMN missing_since timestamptz;
UPDATE clips SET missing_since = now() WHERE missing;

CREATE FUNCTION clips_missing_since() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.missing THEN
        NEW.missing_since := NULL;
    ELSIF TG_OP = 'INSERT' OR NOT OLD.missing THEN
        NEW.missing_since := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER clips_missing_since BEFORE INSERT OR UPDATE OF missing ON clips
    FOR EACH ROW EXECUTE FUNCTION clips_missing_since();

CREATE INDEX clips_missing_since_idx ON clips (missing_since) WHERE missing;

ALTER TABLE uploads ADD COLUMN orphaned_at timestamptz;
-- An upload with no account was made with the bootstrap token (by `admin`, a name no
-- account may take) or lost its uploader's account to a purge.
UPDATE uploads SET orphaned_at = now() WHERE uploaded_by_user_id IS NULL AND uploaded_by <> 'admin';

CREATE FUNCTION uploads_orphaned_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.uploaded_by_user_id IS NOT NULL AND NEW.uploaded_by_user_id IS NULL THEN
        NEW.orphaned_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER uploads_orphaned_at BEFORE UPDATE OF uploaded_by_user_id ON uploads
    FOR EACH ROW EXECUTE FUNCTION uploads_orphaned_at();
