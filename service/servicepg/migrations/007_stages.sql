-- A delegation staged in place: its mission's current stage and the plan
-- (JSON text, NULL for a delegation that is not staged).
ALTER TABLE agentpass_service_delegations
    ADD COLUMN IF NOT EXISTS mission_stage  text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS mission_stages text;
