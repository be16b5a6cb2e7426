-- Scope compilation: what the Harness requested, the Authority's plan for
-- it (the sanitized proposal, whether the compiler failed, the planned
-- decision and the scopes' effects, as JSON text so the stored bytes are
-- the ones written), and the basis and disclosure hash of the decision.
ALTER TABLE agentpass_authority_requests
    ADD COLUMN IF NOT EXISTS requested_scope text[],
    ADD COLUMN IF NOT EXISTS scope_plan text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS decision_scope_basis text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS decision_disclosure text NOT NULL DEFAULT '';
