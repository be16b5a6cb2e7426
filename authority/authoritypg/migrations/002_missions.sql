-- Missions: one per request, kept on the request's row. The row's id
-- becomes the mission id; the request id, the Harness's polling secret, is
-- kept only as its SHA-256 (id_hash). Rows from before this migration get a
-- mission id derived from that hash, so no plaintext request id survives.
ALTER TABLE agentpass_authority_requests
    ADD COLUMN IF NOT EXISTS id_hash           text,
    ADD COLUMN IF NOT EXISTS parent_mission_id text        NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS state             text        NOT NULL DEFAULT 'pending',
    ADD COLUMN IF NOT EXISTS version           bigint      NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS activated_at      timestamptz,
    ADD COLUMN IF NOT EXISTS scope             text[],
    ADD COLUMN IF NOT EXISTS ended_at          timestamptz,
    ADD COLUMN IF NOT EXISTS ended_by          text        NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS ended_cause       text        NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS ended_reason      text        NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS history_head      text        NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS history_count     bigint      NOT NULL DEFAULT 0;

ALTER TABLE agentpass_authority_authorizations
    ADD COLUMN IF NOT EXISTS mission_id text NOT NULL DEFAULT '';

UPDATE agentpass_authority_requests
SET id_hash = encode(sha256(convert_to(id, 'UTF8')), 'hex')
WHERE id_hash IS NULL;
UPDATE agentpass_authority_authorizations a
SET mission_id = 'msn_' || substr(r.id_hash, 1, 32)
FROM agentpass_authority_requests r
WHERE a.request_id = r.id AND a.mission_id = '';
UPDATE agentpass_authority_authorizations SET request_id = '' WHERE request_id <> '';
UPDATE agentpass_authority_requests
SET id = 'msn_' || substr(id_hash, 1, 32),
    state = CASE status WHEN 'approved' THEN 'active' WHEN 'pending' THEN 'pending' ELSE 'revoked' END,
    scope = decision_scope,
    activated_at = CASE status WHEN 'approved' THEN decided_at END
WHERE id NOT LIKE 'msn\_%';

ALTER TABLE agentpass_authority_requests ALTER COLUMN id_hash SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS agentpass_authority_requests_id_hash
    ON agentpass_authority_requests (id_hash);
CREATE INDEX IF NOT EXISTS agentpass_authority_requests_parent
    ON agentpass_authority_requests (parent_mission_id) WHERE parent_mission_id <> '';
CREATE INDEX IF NOT EXISTS agentpass_authority_requests_created
    ON agentpass_authority_requests (created_at, id);
CREATE INDEX IF NOT EXISTS agentpass_authority_authorizations_mission
    ON agentpass_authority_authorizations (mission_id);

-- The hash-chained history: body holds the exact canonical (RFC 8785)
-- bytes that were hashed; bytea, because jsonb would re-normalise them.
CREATE TABLE IF NOT EXISTS agentpass_authority_mission_history (
    mission_id text   NOT NULL REFERENCES agentpass_authority_requests (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    body       bytea  NOT NULL,
    hash       text   NOT NULL,
    PRIMARY KEY (mission_id, seq)
);
