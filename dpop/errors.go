package dpop

import (
	"errors"
)

// Sentinel errors. Every error this package returns matches exactly one of
// them with [errors.Is]; most are an [*Error] that also carries the reason.
var (
	// ErrInvalidProof: a harness proof (harness_proof.jwt) failed
	// verification: its signature, audience, lifetime or request binding
	// does not show that the pass's holder made this request.
	ErrInvalidProof = errors.New("dpop: invalid harness proof")
	// ErrReplay: a proof's (iss, jti) or a DPoP proof's (key, jti) was
	// already seen before it expired.
	ErrReplay = errors.New("dpop: replayed jti")
	// ErrInvalidAttestation: a harness attestation failed verification
	// (signature, key binding, expiry or subject), so the Harness's claimed
	// identity is not vouched for.
	ErrInvalidAttestation = errors.New("dpop: invalid harness attestation")
	// ErrUntrustedAttester: a harness attestation names an issuer that is
	// not in the configured trust list. No network call was made: keys are
	// never fetched from an issuer the token itself names.
	ErrUntrustedAttester = errors.New("dpop: untrusted attestation issuer")
	// ErrInvalidTaskAttestation: a task attestation failed verification
	// (no holder key, wrong key, task id, description hash, issuer or
	// expiry), so the task it describes is not the one the Harness signed.
	ErrInvalidTaskAttestation = errors.New("dpop: invalid task attestation")
	// ErrInvalidKey: a key or JWK is unusable: private members in a public
	// JWK, a symmetric or unsupported key type, a too small RSA modulus, an
	// algorithm that does not fit the key, or an unreadable key file.
	ErrInvalidKey = errors.New("dpop: invalid key")
	// ErrInvalidDPoP: an RFC 9449 DPoP proof failed verification.
	ErrInvalidDPoP = errors.New("dpop: invalid DPoP proof")
	// ErrUseDPoPNonce: the DPoP proof lacks the nonce the server requires
	// or carries a stale one; the server should answer with a fresh
	// DPoP-Nonce header and error "use_dpop_nonce" (RFC 9449 §8). Errors
	// matching it also match ErrInvalidDPoP.
	ErrUseDPoPNonce = errors.New("dpop: use_dpop_nonce")
	// ErrInvalidConfig: a verifier was configured with an empty or invalid
	// expectation (for example an empty Audience); verifiers never read an
	// empty expectation as "skip the check".
	ErrInvalidConfig = errors.New("dpop: invalid configuration")
)

// Error is the typed error behind most failures: Kind is one of the
// sentinels above and Reason says which check failed, in a stable,
// human-readable phrase such as "aud mismatch" or "jti replayed". Err is the
// underlying cause, if any. Reasons never contain token, key or pass
// material, so they are safe to log (not to send to a peer verbatim: map
// them to a wire error first).
type Error struct {
	Kind   error
	Reason string
	Err    error
}

func (e *Error) Error() string {
	s := "dpop: error"
	if e.Kind != nil {
		s = e.Kind.Error()
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the sentinel and the cause, so errors.Is matches both.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func newErr(kind error, reason string) error { return &Error{Kind: kind, Reason: reason} }

func wrapErr(kind error, reason string, err error) error {
	return &Error{Kind: kind, Reason: reason, Err: err}
}
