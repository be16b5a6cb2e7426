-- A mission's stage plan, its current stage and a forward move waiting for
-- a person, as one canonical JSON text (NULL without a plan). Kept as text,
-- not jsonb, so the bytes read are the bytes written.
ALTER TABLE agentpass_authority_requests
    ADD COLUMN IF NOT EXISTS stage_plan text;
