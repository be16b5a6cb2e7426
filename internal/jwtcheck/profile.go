package jwtcheck

import "sync/atomic"

// typ header values, one per kind of token. A kind never accepts another
// kind's typ, so a token minted for one purpose cannot be replayed as
// another.
const (
	TypeProof           = "agentpass-proof+jwt"
	TypeTaskAttestation = "agentpass-task+jwt"
	TypeAttestation     = "agentpass-attestation+jwt"
	TypeDPoP            = "dpop+jwt"
	TypeAssertion       = "agentpass-assertion+jwt"
	TypeSecurityEvent   = "secevent+jwt"
)

// ExpRule says what a kind does with the exp claim.
type ExpRule int

const (
	// ExpRequired: exp must be present (the zero value, the safe default).
	ExpRequired ExpRule = iota
	// ExpOptional: exp is checked when present (RFC 9449 DPoP proofs,
	// whose age is bounded by iat instead).
	ExpOptional
	// ExpForbidden: exp must be absent (RFC 8417 §2.2: a security event
	// token states a fact, it does not expire like a credential).
	ExpForbidden
)

// Profile is the header and time policy of one kind of token. Profiles are
// fixed at initialisation; use the package's values.
type Profile struct {
	// Name names the kind in error messages.
	Name string
	// Typ is the kind's typ header value.
	Typ string
	// RequireTyp refuses a token without Typ. Otherwise a missing typ or
	// the generic "JWT" is accepted too, because plain v0.1 peers send
	// them; another kind's typ never is.
	RequireTyp bool
	// EmbeddedJWK requires the jwk header (RFC 9449 carries the proof key
	// in it); every other kind forbids it, because a key taken from the
	// token itself proves nothing.
	EmbeddedJWK bool
	// MaxBytes caps the compact serialisation.
	MaxBytes int
	// Exp is the exp rule.
	Exp ExpRule

	// mediaPrefix also accepts typ with the "application/" prefix that
	// RFC 7515 §4.1.9 lets senders omit (RFC 8417 SETs are sent both ways).
	mediaPrefix bool

	parses atomic.Uint64
}

// Parses returns how many times Parse has run with p. Tests use it to
// prove that a request parses each token once.
func (p *Profile) Parses() uint64 { return p.parses.Load() }

// The profiles, one per kind.
var (
	HarnessProof       = &Profile{Name: "harness proof", Typ: TypeProof, MaxBytes: 16 << 10}
	TaskAttestation    = &Profile{Name: "task attestation", Typ: TypeTaskAttestation, MaxBytes: 16 << 10}
	HarnessAttestation = &Profile{Name: "harness attestation", Typ: TypeAttestation, MaxBytes: 16 << 10}
	DPoP               = &Profile{Name: "DPoP proof", Typ: TypeDPoP, RequireTyp: true, EmbeddedJWK: true, MaxBytes: 16 << 10, Exp: ExpOptional}
	Assertion          = &Profile{Name: "assertion", Typ: TypeAssertion, MaxBytes: 8 << 10}
	SecurityEvent      = &Profile{Name: "security event token", Typ: TypeSecurityEvent, RequireTyp: true, MaxBytes: 16 << 10, Exp: ExpForbidden, mediaPrefix: true}
)
