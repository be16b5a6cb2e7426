-- The log that feeds hooks: every history row gets an order key
-- (log_xid, log_id). log_xid is the writing transaction's id, raised to
-- that of the mission's previous row, so that within a mission the key
-- follows seq even when a transaction took its id before waiting for the
-- mission's lock. A reader returns only rows with log_xid below the oldest
-- running transaction (pg_snapshot_xmin), so no row can later commit
-- behind a position it has passed.
ALTER TABLE agentpass_authority_mission_history
    ADD COLUMN IF NOT EXISTS log_xid xid8 NOT NULL DEFAULT '0',
    ADD COLUMN IF NOT EXISTS log_id bigserial;

CREATE INDEX IF NOT EXISTS agentpass_authority_mission_history_log
    ON agentpass_authority_mission_history (log_xid, log_id);

CREATE OR REPLACE FUNCTION agentpass_authority_history_log_xid() RETURNS trigger AS $$
BEGIN
    NEW.log_xid := GREATEST(pg_current_xact_id(), COALESCE((
        SELECT log_xid FROM agentpass_authority_mission_history
        WHERE mission_id = NEW.mission_id AND seq = NEW.seq - 1), '0'::xid8));
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS agentpass_authority_history_log_xid ON agentpass_authority_mission_history;
CREATE TRIGGER agentpass_authority_history_log_xid
    BEFORE INSERT ON agentpass_authority_mission_history
    FOR EACH ROW EXECUTE FUNCTION agentpass_authority_history_log_xid();

-- Positions of hook consumers, each leased to one replica at a time.
CREATE TABLE IF NOT EXISTS agentpass_authority_hook_consumers (
    name        text        PRIMARY KEY,
    position    text        NOT NULL DEFAULT '',
    owner       text        NOT NULL DEFAULT '',
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
);

-- Retention per kind: undecided requests are pruned by their own index,
-- so requests kept forever never slow the janitor down.
CREATE INDEX IF NOT EXISTS agentpass_authority_requests_undecided_ends
    ON agentpass_authority_requests (ends_at)
    WHERE NOT COALESCE(decision_status = 'approved' OR decided_at > created_at, false);
