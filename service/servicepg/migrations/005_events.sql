-- Security events (events extension): the parent mission of a delegated
-- mission, so that ending an ancestor ends the descendants held here, and
-- the flag an event sets when only an authorization check may confirm
-- what it announced (a widening or a skipped version).
ALTER TABLE agentpass_service_delegations
    ADD COLUMN IF NOT EXISTS mission_parent text    NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS stale          boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS agentpass_service_delegations_parent
    ON agentpass_service_delegations (authority, mission_parent) WHERE mission_parent <> '';
