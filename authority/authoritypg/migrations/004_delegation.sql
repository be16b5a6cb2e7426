-- Delegation rights granted at approval: the sub-agent generations allowed
-- below a mission and its live children at once. Zero allows none, so rows
-- approved before this migration cannot delegate.
ALTER TABLE agentpass_authority_requests
    ADD COLUMN IF NOT EXISTS decision_max_depth integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS decision_max_children integer NOT NULL DEFAULT 0;
