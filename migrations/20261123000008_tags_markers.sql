-- Tags on clips (a shared vocabulary managed under the manage_tags policy) and markers
-- at a time in a clip.
CREATE TABLE tags (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX tags_name_idx ON tags (lower(name));

CREATE TABLE clip_tags (
    clip_id     uuid        NOT NULL REFERENCES clips (id) ON DELETE CASCADE,
    tag_id      uuid        NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    tagged_by   text        NOT NULL,
    tagged_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clip_id, tag_id)
);

CREATE INDEX clip_tags_tag_idx ON clip_tags (tag_id);

CREATE TABLE markers (
    id          uuid PRIMARY KEY,
    clip_id     uuid             NOT NULL REFERENCES clips (id) ON DELETE CASCADE,
    at_s        double precision NOT NULL CHECK (at_s >= 0),
    label       text             NOT NULL DEFAULT '',
    created_by  text             NOT NULL,
    created_at  timestamptz      NOT NULL DEFAULT now()
);

CREATE INDEX markers_clip_idx ON markers (clip_id, at_s);
