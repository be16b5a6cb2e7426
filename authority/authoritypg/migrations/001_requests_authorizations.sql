-- Issuance requests: one row per request; the pass is kept only as its hash.
CREATE TABLE IF NOT EXISTS agentpass_authority_requests (
    id                       text        PRIMARY KEY,
    status                   text        NOT NULL,
    created_at               timestamptz,
    expires_at               timestamptz,            -- a pending request expires
    type                     text        NOT NULL DEFAULT '',
    service                  text        NOT NULL DEFAULT '',
    user_email               text        NOT NULL DEFAULT '',
    harness_id               text        NOT NULL DEFAULT '',
    cnf                      json,                   -- exact bytes of harness.cnf.jwk
    agent_id                 text        NOT NULL DEFAULT '',
    tier                     text        NOT NULL DEFAULT '',
    attestation_issuer       text        NOT NULL DEFAULT '',
    task_id                  text        NOT NULL DEFAULT '',
    task_description         text        NOT NULL DEFAULT '',
    task_attested            boolean     NOT NULL DEFAULT false,
    destination_url          text        NOT NULL DEFAULT '',
    available_scope          text[],
    proposed_scope           text[],
    proposed_by              text        NOT NULL DEFAULT '',
    parent_authorization_id  text        NOT NULL DEFAULT '',
    -- decision evidence; decision_status is NULL while undecided
    decision_status          text,
    decided_by               text        NOT NULL DEFAULT '',
    decided_at               timestamptz,
    decision_reason          text        NOT NULL DEFAULT '',
    decision_scope           text[],
    pass_expires_at          timestamptz,
    authorization_expires_at timestamptz,
    -- the pass: its hash while redeemable, then the consumption
    pass_hash                text        UNIQUE,
    consumed_at              timestamptz,
    authorization_id         text,
    -- when the row stopped (or will stop) changing; Prune deletes by it
    ends_at                  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS agentpass_authority_requests_pending
    ON agentpass_authority_requests (status, expires_at);
CREATE INDEX IF NOT EXISTS agentpass_authority_requests_pending_created
    ON agentpass_authority_requests (created_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS agentpass_authority_requests_service
    ON agentpass_authority_requests (service, created_at);
CREATE INDEX IF NOT EXISTS agentpass_authority_requests_user
    ON agentpass_authority_requests (lower(user_email), created_at);
CREATE INDEX IF NOT EXISTS agentpass_authority_requests_ends
    ON agentpass_authority_requests (ends_at);

-- Authorizations: one row per consumed pass.
CREATE TABLE IF NOT EXISTS agentpass_authority_authorizations (
    id                       text        PRIMARY KEY,
    request_id               text        NOT NULL DEFAULT '',
    parent_id                text        NOT NULL DEFAULT '',
    state                    text        NOT NULL,
    service                  text        NOT NULL DEFAULT '',
    type                     text        NOT NULL DEFAULT '',
    user_email               text        NOT NULL DEFAULT '',
    agent_id                 text        NOT NULL DEFAULT '',
    harness_id               text        NOT NULL DEFAULT '',
    cnf                      json,
    tier                     text        NOT NULL DEFAULT '',
    task_id                  text        NOT NULL DEFAULT '',
    task_description         text        NOT NULL DEFAULT '',
    task_attested            boolean     NOT NULL DEFAULT false,
    destination_url          text        NOT NULL DEFAULT '',
    granted_scope            text[],
    scope                    text[],
    created_at               timestamptz,
    expires_at               timestamptz,
    approval_status          text        NOT NULL DEFAULT '',
    approval_by              text        NOT NULL DEFAULT '',
    approval_at              timestamptz,
    approval_reason          text        NOT NULL DEFAULT '',
    approval_scope           text[],
    approval_pass_expires_at timestamptz,
    approval_authorization_expires_at timestamptz,
    updated_at               timestamptz,
    state_by                 text        NOT NULL DEFAULT '',
    state_reason             text        NOT NULL DEFAULT '',
    closed_at                timestamptz,
    ends_at                  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS agentpass_authority_authorizations_live
    ON agentpass_authority_authorizations (created_at DESC, id) WHERE state IN ('active', 'suspended');
CREATE INDEX IF NOT EXISTS agentpass_authority_authorizations_service
    ON agentpass_authority_authorizations (service, created_at DESC);
CREATE INDEX IF NOT EXISTS agentpass_authority_authorizations_user
    ON agentpass_authority_authorizations (lower(user_email), created_at DESC);
CREATE INDEX IF NOT EXISTS agentpass_authority_authorizations_parent
    ON agentpass_authority_authorizations (parent_id);
CREATE INDEX IF NOT EXISTS agentpass_authority_authorizations_ends
    ON agentpass_authority_authorizations (ends_at);
