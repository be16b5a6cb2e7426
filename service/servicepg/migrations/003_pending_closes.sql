-- Delegations the Service refused after their pass was consumed and could
-- not yet revoke at the Authority; Service.Run retries them.
CREATE TABLE IF NOT EXISTS agentpass_service_pending_closes (
    authorization_id  text        PRIMARY KEY,
    authority         text        NOT NULL,
    configuration_url text        NOT NULL,
    trust_mode        text        NOT NULL,
    reason            text        NOT NULL DEFAULT '',
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt      timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS agentpass_service_pending_closes_due
    ON agentpass_service_pending_closes (next_attempt);
CREATE INDEX IF NOT EXISTS agentpass_service_pending_closes_expires
    ON agentpass_service_pending_closes (expires_at);
