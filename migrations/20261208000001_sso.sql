-- Single sign-on (OpenID Connect): the sign-ins under way and the provider accounts
-- linked to Rushes users.

-- One authorization request sent to the provider, until its callback uses it (once)
-- or it expires. The state and the browser's binding cookie are kept as SHA-256
-- digests; the PKCE verifier lives here only while the sign-in is under way.
CREATE TABLE oidc_logins (
    state_digest    bytea       PRIMARY KEY,
    browser_digest  bytea       NOT NULL,
    nonce           text        NOT NULL,
    code_verifier   text,
    next_path       text        NOT NULL DEFAULT '/',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);

CREATE INDEX oidc_logins_expiry_idx ON oidc_logins (expires_at);

-- A provider's account (issuer and subject) and the user it signs in as.
CREATE TABLE user_identities (
    issuer         text        NOT NULL,
    subject        text        NOT NULL,
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz,
    PRIMARY KEY (issuer, subject)
);

CREATE INDEX user_identities_user_idx ON user_identities (user_id);
