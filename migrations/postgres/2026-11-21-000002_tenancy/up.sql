-- Tenants. Every row below carries its organization's id, and every query filters by it.
CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

-- People who sign in; an email is unique within its organization.
CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email            TEXT NOT NULL,
    name             TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    role             TEXT NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    UNIQUE (organization_id, email)
);

-- Invitations to join an organization: a one-time token (kept as a SHA-256 hash) that
-- the invited person exchanges for an account.
CREATE TABLE invitations (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email            TEXT NOT NULL,
    role             TEXT NOT NULL,
    token_hash       TEXT NOT NULL UNIQUE,
    invited_by       TEXT NOT NULL,
    expires_at       TIMESTAMP NOT NULL,
    accepted_at      TIMESTAMP,
    revoked_at       TIMESTAMP,
    created_at       TIMESTAMP NOT NULL
);
CREATE INDEX invitations_organization ON invitations (organization_id, id);

-- API keys: only a SHA-256 hash of the secret is kept, found by a short public prefix.
CREATE TABLE api_keys (
    id                 TEXT PRIMARY KEY,
    organization_id    TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    created_by         TEXT,
    name               TEXT NOT NULL,
    key_type           TEXT NOT NULL,
    prefix             TEXT NOT NULL UNIQUE,
    key_hash           TEXT NOT NULL,
    scopes             TEXT NOT NULL,
    rate_per_minute    INTEGER,
    rate_burst         INTEGER,
    expires_at         TIMESTAMP,
    revoked_at         TIMESTAMP,
    last_used_at       TIMESTAMP,
    created_at         TIMESTAMP NOT NULL
);
CREATE INDEX api_keys_organization ON api_keys (organization_id, id);

-- Refresh tokens, rotated on each use; tokens of one login share a family.
CREATE TABLE refresh_tokens (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id        TEXT NOT NULL,
    token_hash       TEXT NOT NULL UNIQUE,
    expires_at       TIMESTAMP NOT NULL,
    rotated_at       TIMESTAMP,
    revoked_at       TIMESTAMP,
    created_at       TIMESTAMP NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Security-relevant actions. Never holds a secret.
CREATE TABLE audit_log (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    actor_type       TEXT NOT NULL,
    actor_id         TEXT,
    action           TEXT NOT NULL,
    target_type      TEXT,
    target_id        TEXT,
    outcome          TEXT NOT NULL,
    details          TEXT NOT NULL,
    ip               TEXT,
    created_at       TIMESTAMP NOT NULL
);
CREATE INDEX audit_log_organization ON audit_log (organization_id, id);

-- Conversation and session context shared by agents.
CREATE TABLE contexts (
    id                TEXT PRIMARY KEY,
    organization_id   TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    context_type      TEXT NOT NULL,
    agent_id          TEXT,
    model_id          TEXT,
    session_id        TEXT,
    metadata          TEXT NOT NULL,
    token_budget      BIGINT,
    version           BIGINT NOT NULL,
    item_count        BIGINT NOT NULL,
    token_total       BIGINT NOT NULL,
    next_seq          BIGINT NOT NULL,
    created_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL
);
CREATE INDEX contexts_organization ON contexts (organization_id, id);

CREATE TABLE context_items (
    id               TEXT PRIMARY KEY,
    context_id       TEXT NOT NULL REFERENCES contexts (id) ON DELETE CASCADE,
    organization_id  TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    role             TEXT NOT NULL,
    content          TEXT NOT NULL,
    token_count      BIGINT NOT NULL,
    metadata         TEXT NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    UNIQUE (context_id, seq)
);

-- Node-shared settings made once (the token signing key when none is configured).
CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
