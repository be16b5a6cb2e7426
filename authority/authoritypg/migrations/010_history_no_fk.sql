-- The history's foreign key to its mission: its check ran on every
-- consumption (a lookup and a lock of the row the same statement had just
-- updated, more than a sixth of the write's time). Every insert already
-- holds or writes the mission's row, and Prune deletes a mission's history
-- in the statement that deletes the mission, which the cascade did.
ALTER TABLE agentpass_authority_mission_history
    DROP CONSTRAINT IF EXISTS agentpass_authority_mission_history_mission_id_fkey;
