-- The mission of each delegation (mission extension): its id at the
-- Authority, the newest version seen, and its state (suspended while the
-- delegation is held). Missions are named by (authority, mission_id):
-- ids are chosen by Authorities, so an id alone never selects a row.
ALTER TABLE agentpass_service_delegations
    ADD COLUMN IF NOT EXISTS mission_id      text   NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS mission_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS mission_state   text   NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS agentpass_service_delegations_mission
    ON agentpass_service_delegations (authority, mission_id) WHERE mission_id <> '';
