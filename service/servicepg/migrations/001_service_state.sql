-- Delegations: one row per redeemed AgentPass, keyed by the Authority's
-- authorization_id. Invalidation flips this row, and credentials are always
-- read joined with it, so it takes effect at once for every replica.
CREATE TABLE IF NOT EXISTS agentpass_service_delegations (
    authorization_id  text        PRIMARY KEY,
    authority         text        NOT NULL DEFAULT '',
    configuration_url text        NOT NULL DEFAULT '',
    trust_mode        text        NOT NULL DEFAULT '',
    user_email        text        NOT NULL DEFAULT '',
    agent             text        NOT NULL DEFAULT '',
    harness_id        text        NOT NULL DEFAULT '',
    task_id           text        NOT NULL DEFAULT '',
    task_description  text        NOT NULL DEFAULT '',
    task_attested     boolean     NOT NULL DEFAULT false,
    scope             text[],
    current_scope     text[],
    expires_at        timestamptz,                 -- NULL: the Authority sent none
    created_at        timestamptz,
    checked_at        timestamptz,
    invalidated       boolean     NOT NULL DEFAULT false,
    invalidated_at    timestamptz,
    invalid_reason    text        NOT NULL DEFAULT ''
);

-- Credentials (bearer, DPoP-bound, session), by the SHA-256 of the secret.
CREATE TABLE IF NOT EXISTS agentpass_service_credentials (
    hash             text        PRIMARY KEY,
    kind             text        NOT NULL,
    authorization_id text        NOT NULL,
    scope            text[],
    jkt              text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS agentpass_service_credentials_authz
    ON agentpass_service_credentials (authorization_id);
CREATE INDEX IF NOT EXISTS agentpass_service_credentials_expires
    ON agentpass_service_credentials (expires_at);

-- One-time browser-session initialization tokens, by the SHA-256 of the token.
CREATE TABLE IF NOT EXISTS agentpass_service_init_tokens (
    hash             text        PRIMARY KEY,
    authorization_id text        NOT NULL,
    scope            text[],
    destination      text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    used             boolean     NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS agentpass_service_init_tokens_authz
    ON agentpass_service_init_tokens (authorization_id);
CREATE INDEX IF NOT EXISTS agentpass_service_init_tokens_expires
    ON agentpass_service_init_tokens (expires_at);

-- Harness-proof replay cache: the primary key makes a (issuer, jti) pair
-- single-use across replicas.
CREATE TABLE IF NOT EXISTS agentpass_service_proofs (
    key        bytea       PRIMARY KEY,            -- SHA-256 of len(issuer), issuer, jti
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS agentpass_service_proofs_expires
    ON agentpass_service_proofs (expires_at);
