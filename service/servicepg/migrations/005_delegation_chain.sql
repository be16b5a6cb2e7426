-- Sub-agent delegations (delegation extension): the chain of actors, and
-- the ancestor missions at the same Authority, parent first. Ending a
-- delegation ends, in the same statement, every delegation of the same
-- authority whose ancestors include its mission (the local cascade).
ALTER TABLE agentpass_service_delegations
    ADD COLUMN IF NOT EXISTS chain     jsonb,
    ADD COLUMN IF NOT EXISTS ancestors text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS agentpass_service_delegations_ancestors
    ON agentpass_service_delegations USING gin (ancestors) WHERE cardinality(ancestors) > 0;
