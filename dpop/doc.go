// Package dpop implements every proof-of-possession JWT of AgentPass, on
// both sides (create and verify): holder-binding keys, harness proofs, task
// attestations, harness attestations, RFC 9449 DPoP proofs, and the signing
// key sets Services and Authorities use for their assertions.
//
// # Overview
//
// A Harness makes one [Key] per task with [GenerateKey] and signs proofs and
// attestations with it. A Service verifies harness proofs with a
// [ProofVerifier] and DPoP proofs with a [DPoPVerifier]; an Authority
// verifies attestations with an [AttestationVerifier] and
// [VerifyTaskAttestation]. Services and Authorities sign their own
// assertions with a [KeySet].
//
// # Usage
//
// A Harness creates one key per task and sends its JWK with the issuance
// request, together with a task attestation:
//
//	key, err := dpop.GenerateKey("") // ES256
//	req.Harness.Cnf = &pass.Cnf{JWK: key.PublicJSON()}
//	jwt, err := key.TaskAttestation(harnessID, task.ID, task.Description, 0, time.Time{})
//	req.Task.Attestation = &pass.JWTContainer{JWT: jwt}
//
// and a fresh proof with every redemption:
//
//	proof, err := key.HarnessProof(dpop.ProofParams{
//		HarnessID: harnessID, Audience: serviceOrigin,
//		Method: "POST", URL: redeemURL, AgentPass: passValue,
//	})
//
// An Authority verifies the attestations before issuing anything:
//
//	id, err := attestations.Verify(ctx, req.Harness) // *dpop.AttestationVerifier
//	err = dpop.VerifyTaskAttestation(req.Task.Attestation.JWT, req.Harness.Cnf.JWK,
//		req.Harness.ID, req.Task.ID, req.Task.Description, time.Time{}, 0)
//
// A Service verifies the proof against the cnf of the validation response:
//
//	v, err := dpop.NewProofVerifier(dpop.ProofVerifierConfig{Audience: origin,
//		Replay: dpop.NewMemoryReplayCache()}) // or dpoppg for replicas
//	claims, err := v.Verify(ctx, redemption.HarnessProof.JWT, validation.Cnf.JWK,
//		dpop.ProofRequest{Method: r.Method, URL: redeemURL, AgentPass: passValue,
//			RequireBinding: true})
//
// Build each verifier once with its constructor, which refuses an
// incomplete configuration at startup, and share it; the zero values
// refuse every proof (the zero AttestationVerifier trusts no attester).
// The package never logs, and never makes a network call except through
// the [KeyFetcher] of an [AttestationVerifier], for issuers pinned by JWKS
// URL.
//
// # Holder binding
//
// AgentPass is zero-trust because a pass is bound to the Harness that asked
// for it (§3.1.1). A pass travels through the Authority's status endpoint,
// the Harness, logs and the Service; whoever holds its value could redeem
// it. Holder binding makes a stolen value useless: the Harness generates an
// ephemeral [Key] per task and sends its public JWK as harness.cnf.jwk at
// issuance, the Authority echoes it as cnf at validation, and at redemption
// the Service requires a fresh, short-lived harness proof signed with that
// key. Everything else here builds on the same key:
//
//   - Harness proof ([Key.HarnessProof], [ProofVerifier]): iss = harness.id,
//     aud = Service origin, iat, exp, a random jti, plus htm, htu and aph
//     (the hash of the pass value) from the holder-binding hardening draft,
//     which tie the proof to one request and one pass. The Service records
//     (iss, jti) in a [ReplayCache] shared by its replicas.
//   - Task attestation ([Key.TaskAttestation], [VerifyTaskAttestation]): a
//     non-repudiable record, signed with the holder key, of which task the
//     pass was asked for (§3.1.3).
//   - Harness attestation ([AttestationVerifier]): a vendor-signed JWT that
//     binds a verified agent identity to the holder key (§3.1.2). Issuers
//     are pinned by local policy, never discovered from the token (or
//     anyone could run an issuer and attest any agent), and the result is
//     a trust [Tier].
//   - DPoP ([Key.DPoPProof], [DPoPVerifier]): RFC 9449 proofs, so a Service
//     can issue bearer tokens bound to the Harness key (cnf.jkt) and a
//     leaked token is as useless as a leaked pass.
//   - Signing keys ([KeySet]): a current key plus retiring keys,
//     all published in the JWKS, so rotation never breaks an assertion in
//     flight.
//
// # Security rules
//
// These hold for every verifier in the package:
//
//  1. Only the asymmetric algorithms ES256, ES384, EdDSA, RS256 and PS256 are signed or accepted;
//     "none" and HMAC never are: "none" has no signature, and HMAC would
//     turn a public key into a shared secret anyone can sign with.
//  2. Keys come only from cnf, a pinned key set or a pinned JWKS URL: a
//     token's jku, x5u, x5c or jwk header is refused, except the jwk header
//     a DPoP proof must carry. A JWK with private or symmetric members is
//     refused.
//  3. Keys are compared by RFC 7638 thumbprint ([Thumbprint], [SameKey]),
//     never by JSON text.
//  4. Clock skew defaults to 60 s; proofs and task attestations live at most
//     300 s, harness attestations at most 1 h, so a stolen token is soon
//     useless.
//  5. Each kind of token has its own typ ("agentpass-proof+jwt",
//     "agentpass-task+jwt", "agentpass-attestation+jwt", "dpop+jwt") and claim set;
//     a token of one kind is never accepted as another, although proofs
//     and task attestations are signed with the same key. A token
//     without typ, or with the generic "JWT", is accepted from a plain v0.1
//     peer, except for DPoP where typ is required.
//  6. Empty expectations are configuration errors ([ErrInvalidConfig]),
//     never "skip the check".
//  7. A replay cache that cannot record a jti rejects the proof; the
//     in-memory cache evicts expired jtis first, keeps a share of its room
//     for each issuer, and refuses new proofs when full rather than forget
//     an unexpired jti.
//  8. The replay step comes last: a jti is recorded only once the
//     signature and every other check passed, so forged or mismatched
//     proofs take no space in the cache.
//
// Errors match one sentinel with [errors.Is] ([ErrInvalidProof],
// [ErrInvalidTaskAttestation], [ErrInvalidAttestation],
// [ErrUntrustedAttester], [ErrInvalidDPoP], [ErrInvalidKey], [ErrReplay],
// [ErrInvalidConfig]) and are usually an [*Error] whose Reason names the
// failed check. Reasons are meant for logs; map them to wire errors
// before answering a peer.
package dpop
