-- Admin mail-outs: a draft (sanitised HTML, recipients), sent now or at a time through
-- a clocked schedule that runs the `send_email_draft` job.
CREATE TABLE email_drafts (
    id           uuid PRIMARY KEY,
    subject      text        NOT NULL CHECK (subject <> ''),
    html         text        NOT NULL,
    user_ids     uuid[]      NOT NULL DEFAULT '{}',
    group_ids    uuid[]      NOT NULL DEFAULT '{}',
    everyone     boolean     NOT NULL DEFAULT false,
    send_at      timestamptz,
    schedule_id  uuid REFERENCES schedules (id) ON DELETE SET NULL,
    -- draft → scheduled → sent (or straight to sent).
    state        text        NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'scheduled', 'sent')),
    sent_at      timestamptz,
    recipients   integer,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
