// Package dpop implements every proof-of-possession JWT of AgentPass, on
// both sides: holder-binding keys, harness proofs, task attestations,
// harness attestations, RFC 9449 DPoP proofs, and the signing key sets of
// Services and Authorities.
//
// # Overview
//
// AgentPass is zero-trust because a pass is bound to the Harness that asked
// for it (§3.1.1). The Harness generates an ephemeral [Key] per task and
// sends its public JWK as harness.cnf.jwk at issuance. A pass stolen in
// transit is useless without that key: at redemption the Service checks a
// fresh, short-lived harness proof signed with it.
//
// Keys are compared by RFC 7638 thumbprint ([Thumbprint], [SameKey]), never
// by JSON text. Only the asymmetric algorithms in [Algorithms] are signed or
// accepted; "none", HMAC, and keys named by jku, x5u, x5c or an embedded jwk
// header are always refused (except the jwk header DPoP requires).
//
// Verifiers fail closed: an empty expectation (audience, key, harness id) is
// a configuration error, never "skip the check".
package dpop
