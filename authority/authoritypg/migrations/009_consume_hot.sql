-- A consumption updates its request's row in place (a heap-only update,
-- which writes no index entry) when the new version fits on the row's
-- page: keep a quarter of each page free for it. This applies to pages
-- filled from now on; existing rows stay as they are.
ALTER TABLE agentpass_authority_requests SET (fillfactor = 75);

-- Indexes no query reads, each written by every consumption:
-- authorizations are read by id, by listing (live, service, user) and by
-- end (Prune); parent_id is never set, and a mission's authorization is
-- found from the mission's row (authorization_id).
DROP INDEX IF EXISTS agentpass_authority_authorizations_parent;
DROP INDEX IF EXISTS agentpass_authority_authorizations_mission;

-- The history's order key: a statement that computes log_xid itself, as
-- the trigger would (ConsumePass's write, which holds the mission's row),
-- skips the trigger's call; every other insert leaves it at its default
-- and gets it from the trigger, as before.
DROP TRIGGER IF EXISTS agentpass_authority_history_log_xid ON agentpass_authority_mission_history;
CREATE TRIGGER agentpass_authority_history_log_xid
    BEFORE INSERT ON agentpass_authority_mission_history
    FOR EACH ROW WHEN (NEW.log_xid = '0'::xid8)
    EXECUTE FUNCTION agentpass_authority_history_log_xid();
