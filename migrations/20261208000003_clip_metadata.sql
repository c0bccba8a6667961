-- Custom metadata (Globaledit's metadata schemas) and review metadata of clips.

-- A field admins define, for every production (base_production_id NULL) or for the
-- productions of one base production. Its name is how clips and filters name it.
CREATE TABLE metadata_fields (
    id                  uuid        PRIMARY KEY,
    name                text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    display_name        text        NOT NULL CHECK (display_name <> ''),
    kind                text        NOT NULL
                        CHECK (kind IN ('text', 'number', 'date', 'choice', 'multi_choice', 'boolean')),
    choices             text[]      NOT NULL DEFAULT '{}',
    base_production_id  uuid REFERENCES base_productions (id) ON DELETE CASCADE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind IN ('choice', 'multi_choice')) = (cardinality(choices) > 0))
);

CREATE UNIQUE INDEX metadata_fields_global_name_idx ON metadata_fields (name) WHERE base_production_id IS NULL;
CREATE UNIQUE INDEX metadata_fields_base_name_idx ON metadata_fields (base_production_id, name)
    WHERE base_production_id IS NOT NULL;

-- A clip's values of those fields (field name → value), and its review metadata.
ALTER TABLE clips
    ADD COLUMN metadata       jsonb    NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    ADD COLUMN rating         smallint NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5),
    ADD COLUMN colour_label   text
               CHECK (colour_label IN ('red', 'orange', 'yellow', 'green', 'blue', 'purple', 'grey')),
    ADD COLUMN review_status  text     NOT NULL DEFAULT 'none'
               CHECK (review_status IN ('none', 'selected', 'rejected', 'approved')),
    ADD COLUMN labels         text[]   NOT NULL DEFAULT '{}';

CREATE INDEX clips_metadata_idx ON clips USING gin (metadata jsonb_path_ops);
CREATE INDEX clips_labels_idx ON clips USING gin (labels);
