-- Security events (events extension): the flag an event sets when only an
-- authorization check may confirm what it announced (a widening or a
-- skipped version). Descendants are found through ancestors (005).
ALTER TABLE agentpass_service_delegations
    ADD COLUMN IF NOT EXISTS stale boolean NOT NULL DEFAULT false;
