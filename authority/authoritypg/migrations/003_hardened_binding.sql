-- A request whose Harness listed the holder-binding extension: its status
-- is released only to a holder proof and its pass needs a hardened proof.
ALTER TABLE agentpass_authority_requests
    ADD COLUMN IF NOT EXISTS hardened_binding boolean NOT NULL DEFAULT false;
ALTER TABLE agentpass_authority_authorizations
    ADD COLUMN IF NOT EXISTS hardened_binding boolean NOT NULL DEFAULT false;
