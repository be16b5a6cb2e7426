CREATE TABLE IF NOT EXISTS agentpass_proof_replay (
    key        bytea       PRIMARY KEY,  -- SHA-256 of issuer and jti
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS agentpass_proof_replay_expires ON agentpass_proof_replay (expires_at);
