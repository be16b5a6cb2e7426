package dpop

import (
	"fmt"
	"time"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

// JWT "typ" header values, one per kind of token, so that a proof cannot be
// passed off as a task attestation signed with the same key, or the other
// way round. Our senders always
// set them; our verifiers accept a token without typ, or with the generic
// "JWT", from a plain v0.1 peer, but never a token carrying another kind's
// typ. DPoP proofs must carry "dpop+jwt" (RFC 9449 §4.2).
const (
	typeProof           = jwtcheck.TypeProof
	typeTaskAttestation = jwtcheck.TypeTaskAttestation
	typeAttestation     = jwtcheck.TypeAttestation
	typeDPoP            = jwtcheck.TypeDPoP
)

// Defaults, applied when the matching field or argument is zero. The spec
// asks for "short-lived" tokens without a number; these bound how long a
// stolen token stays usable.
const (
	// DefaultSkew is the clock leeway applied to exp, iat and nbf.
	DefaultSkew = 60 * time.Second
	// defaultProofTTL is the lifetime of proofs and task attestations we
	// create.
	defaultProofTTL = 60 * time.Second
	// DefaultMaxLifetime bounds exp - iat of harness proofs and task
	// attestations, and the age of DPoP proofs.
	DefaultMaxLifetime = 300 * time.Second
	// defaultAttestationMaxLifetime bounds exp - iat of harness attestations.
	defaultAttestationMaxLifetime = time.Hour
)

// maxConfigLifetime caps the configurable lifetimes and skews: a replay
// record lives as long as a token is acceptable, so a lifetime of years
// would let one verifier's records outlive any cache bound.
const maxConfigLifetime = 24 * time.Hour

// sign signs claims with k through the module's one signing path, which
// always sets typ and a jti.
func (k *Key) sign(typ string, embedJWK bool, claims any) (string, error) {
	s, err := jwtcheck.Sign(jwtcheck.Signer{Key: k.opaque, Alg: k.alg, KeyID: k.kid, Raw: k.signer}, typ, embedJWK, claims)
	if err != nil {
		return "", fmt.Errorf("dpop: %w", err)
	}
	return s, nil
}
