-- Proof and assertion jtis moved to the replay table every role shares
-- (package dpop/dpoppg, table agentpass_proof_replay). The rows here only
-- guarded proofs that expire within minutes, so nothing is carried over.
DROP TABLE IF EXISTS agentpass_service_proofs;
