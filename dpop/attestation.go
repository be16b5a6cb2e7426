package dpop

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
	"github.com/agentpass-go/agentpass/pass"
)

// Tier is a trust tier of §3.1.4: how much the Authority knows about who
// the Harness is.
type Tier string

// Trust tiers, from most to least known. An Authority may refuse requests
// below the tier its policy requires.
const (
	// TierAttested: a trusted vendor signed an attestation binding a
	// verified agent identity to the holder-binding key.
	TierAttested Tier = "attested"
	// TierRegistered: the holder-binding key was registered with the
	// Authority out of band.
	TierRegistered Tier = "registered"
	// TierUnverified: harness.id is self-asserted; holder binding still
	// works.
	TierUnverified Tier = "unverified"
)

// defaultAttestationTTL is the lifetime of attestations created by
// HarnessAttestation when ttl is zero.
const defaultAttestationTTL = 5 * time.Minute

// Attester is a trusted attestation issuer with its pinned keys. Keys are
// pinned by local policy, never discovered from the token's iss: otherwise
// anyone could run an "issuer" and attest any agent. Exactly one of Keys and
// JWKSURL is set.
type Attester struct {
	// Issuer is the exact iss value the attester signs with, e.g.
	// "https://vendor.example". Compared as an exact string.
	Issuer string
	// Keys pins the attester's public keys.
	Keys *jose.JSONWebKeySet
	// JWKSURL pins an https:// URL of the attester's JWKS, fetched through
	// AttestationVerifier.Fetcher (discovery's cache). The attestation must
	// then carry a kid.
	JWKSURL string
}

// KeyFetcher returns the key with the given kid from the JWKS at jwksURL,
// typically from a cache that refetches on an unknown kid at most once per
// cooldown. *discovery.Client implements it.
type KeyFetcher interface {
	LookupKey(ctx context.Context, jwksURL, kid string) (*jose.JSONWebKey, error)
}

// Identity is the outcome of AttestationVerifier.Verify.
type Identity struct {
	// AgentID is the agent identity to use as agent.id: the
	// attestation's sub (which equals harness.id) for TierAttested, the
	// registered name for TierRegistered, harness.id for TierUnverified.
	AgentID string
	// Tier is the trust tier reached.
	Tier Tier
	// Issuer is the attestation issuer (TierAttested only).
	Issuer string
	// KeyThumbprint is the RFC 7638 thumbprint of harness.cnf.jwk, empty
	// without holder binding.
	KeyThumbprint string
}

// AttestationVerifierConfig configures [NewAttestationVerifier].
type AttestationVerifierConfig struct {
	// Attesters is the trust list. An attestation from an issuer not in it
	// is rejected with ErrUntrustedAttester before any network call.
	Attesters []Attester
	// Fetcher fetches keys for attesters pinned by JWKSURL. Required when
	// any attester has a JWKSURL.
	Fetcher KeyFetcher
	// Registered maps RFC 7638 thumbprints of registered holder keys to
	// agent ids (the Registered tier). May be nil.
	Registered map[string]string
	// MaxLifetime bounds exp - iat of attestations. Zero means
	// one hour.
	MaxLifetime time.Duration
	// Skew is the clock leeway. Zero means DefaultSkew (60 s).
	Skew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// AttestationVerifier verifies harness attestations at an Authority and
// assigns a trust tier. Create it with [NewAttestationVerifier]; the zero
// value trusts no attester and registers no key, so it only ever reaches
// TierUnverified. It is safe for concurrent use if its Fetcher is.
type AttestationVerifier struct {
	attesters  []Attester
	fetcher    KeyFetcher
	registered map[string]string
	maxLife    time.Duration
	skew       time.Duration
	now        func() time.Time
}

// NewAttestationVerifier validates cfg (every attester names an issuer
// once and pins exactly one of Keys and an https JWKSURL, which needs a
// Fetcher) and returns a verifier holding copies of the trust list and the
// registered keys. Errors match ErrInvalidConfig.
func NewAttestationVerifier(cfg AttestationVerifierConfig) (*AttestationVerifier, error) {
	if err := checkAttesters(cfg.Attesters, cfg.Fetcher); err != nil {
		return nil, err
	}
	if cfg.Skew < 0 || cfg.MaxLifetime < 0 {
		return nil, newErr(ErrInvalidConfig, "negative Skew or MaxLifetime")
	}
	registered := make(map[string]string, len(cfg.Registered))
	for k, id := range cfg.Registered {
		if k == "" || id == "" {
			return nil, newErr(ErrInvalidConfig, "Registered: empty thumbprint or agent id")
		}
		registered[k] = id
	}
	return &AttestationVerifier{
		attesters:  slices.Clone(cfg.Attesters),
		fetcher:    cfg.Fetcher,
		registered: registered,
		maxLife:    orDefault(cfg.MaxLifetime, defaultAttestationMaxLifetime),
		skew:       orDefault(cfg.Skew, DefaultSkew),
		now:        nowOr(cfg.Now),
	}, nil
}

// Verify establishes the identity of the Harness of an issuance request.
//
//  1. With harness.attestation: harness.cnf is required; the attestation's
//     iss must be a configured Attester (else ErrUntrustedAttester, with no
//     network call); the header must pass the allow-list and header rules;
//     sub must equal harness.id, so the verified identity is the one the
//     pass names; cnf.jwk must be the same key as harness.cnf.jwk by
//     thumbprint, so the attestation cannot be lifted onto another key; it
//     must be unexpired with exp - iat at most MaxLifetime; then the
//     signature must verify with the attester's pinned key, found by kid,
//     and never with the holder key itself (a Harness cannot attest
//     itself). Success is TierAttested. A failure is an error, never a fall
//     back to a lower tier, so a forged attestation is refused rather than
//     treated as none.
//  2. Without attestation, a holder key whose thumbprint is in Registered
//     gives TierRegistered.
//  3. Otherwise the tier is TierUnverified.
//
// Errors match ErrInvalidAttestation or ErrUntrustedAttester; an invalid
// harness.cnf.jwk also matches ErrInvalidKey; a misconfigured verifier
// returns ErrInvalidConfig.
func (v *AttestationVerifier) Verify(ctx context.Context, harness pass.HarnessInfo) (Identity, error) {
	if v == nil {
		return Identity{}, newErr(ErrInvalidConfig, "nil AttestationVerifier")
	}
	var (
		holder *jose.JSONWebKey
		thumb  string
	)
	if harness.Cnf != nil {
		var err error
		if holder, err = ParsePublicJWK(harness.Cnf.JWK); err != nil {
			return Identity{}, wrapErr(ErrInvalidAttestation, "harness.cnf.jwk", err)
		}
		if thumb, err = Thumbprint(holder); err != nil {
			return Identity{}, wrapErr(ErrInvalidAttestation, "harness.cnf.jwk", err)
		}
	}
	if harness.Attestation == nil {
		if id, ok := v.registered[thumb]; ok && thumb != "" {
			return Identity{AgentID: id, Tier: TierRegistered, KeyThumbprint: thumb}, nil
		}
		return Identity{AgentID: harness.ID, Tier: TierUnverified, KeyThumbprint: thumb}, nil
	}
	if holder == nil {
		return Identity{}, newErr(ErrInvalidAttestation, "attestation without harness.cnf")
	}
	if harness.ID == "" {
		return Identity{}, newErr(ErrInvalidAttestation, "empty harness.id")
	}
	tok, err := jwtcheck.Parse(harness.Attestation.JWT, jwtcheck.HarnessAttestation)
	if err != nil {
		return Identity{}, checkErr(ErrInvalidAttestation, err)
	}
	// The claims are read before verifying, only to find the issuer and to
	// run the cheap checks that need no key; nothing is trusted until the
	// signature verifies below.
	c := &tok.Claims
	if c.Issuer == "" {
		return Identity{}, newErr(ErrInvalidAttestation, "missing iss")
	}
	att := v.attester(c.Issuer)
	if att == nil {
		return Identity{}, newErr(ErrUntrustedAttester, fmt.Sprintf("issuer %q not trusted", truncate(c.Issuer, 100)))
	}
	if err := v.checkClaims(tok, harness.ID, thumb); err != nil {
		return Identity{}, err
	}
	// The signature covers exactly the payload decoded above.
	if err := v.verifySignature(ctx, tok, att, thumb); err != nil {
		return Identity{}, err
	}
	return Identity{AgentID: c.Subject, Tier: TierAttested, Issuer: att.Issuer, KeyThumbprint: thumb}, nil
}

func (v *AttestationVerifier) checkClaims(tok *jwtcheck.Token, harnessID, thumb string) error {
	c := &tok.Claims
	if c.Subject == "" {
		return newErr(ErrInvalidAttestation, "missing sub")
	}
	if c.Subject != harnessID {
		return newErr(ErrInvalidAttestation, "sub mismatch: sub must equal harness.id")
	}
	if c.Cnf == nil || len(c.Cnf.JWK) == 0 {
		return newErr(ErrInvalidAttestation, "missing cnf.jwk")
	}
	att, err := thumbprintJSON(c.Cnf.JWK)
	if err != nil {
		return wrapErr(ErrInvalidAttestation, "cnf.jwk", err)
	}
	if subtle.ConstantTimeCompare([]byte(att), []byte(thumb)) != 1 {
		return newErr(ErrInvalidAttestation, "attestation for another key: cnf.jwk differs from harness.cnf.jwk")
	}
	// Defaults again here, so that a zero value can never accept a token
	// with unbounded times.
	rules := jwtcheck.TimeRules{Skew: orDefault(v.skew, DefaultSkew), MaxLifetime: orDefault(v.maxLife, defaultAttestationMaxLifetime)}
	if err := jwtcheck.CheckTimes(tok, nowOr(v.now)(), rules); err != nil {
		return checkErr(ErrInvalidAttestation, err)
	}
	return nil
}

// verifySignature finds the attester key for tok and verifies with it.
func (v *AttestationVerifier) verifySignature(ctx context.Context, tok *jwtcheck.Token, att *Attester, holderThumb string) error {
	var candidates []jose.JSONWebKey
	if att.Keys != nil {
		if tok.Kid != "" {
			candidates = att.Keys.Key(tok.Kid)
		} else {
			candidates = att.Keys.Keys
		}
	} else {
		if tok.Kid == "" {
			return newErr(ErrInvalidAttestation, "missing kid (attester pinned by JWKS URL)")
		}
		k, err := v.fetcher.LookupKey(ctx, att.JWKSURL, tok.Kid)
		if err != nil {
			return wrapErr(ErrInvalidAttestation, "fetching attester key", err)
		}
		if k == nil {
			return newErr(ErrInvalidAttestation, "attester key not found")
		}
		candidates = []jose.JSONWebKey{*k}
	}
	tried := false
	for i := range candidates {
		k := candidates[i].Public()
		if checkPublicJWK(&k) != nil || jwtcheck.CheckKey(&k, tok.Alg) != nil {
			continue
		}
		if t, err := Thumbprint(&k); err != nil || t == holderThumb {
			continue // never signed by the Harness key itself
		}
		tried = true
		if tok.Verify(&k) == nil {
			return nil
		}
	}
	if !tried {
		return newErr(ErrInvalidAttestation, "no attester key for kid and alg")
	}
	return newErr(ErrInvalidAttestation, "bad signature")
}

func (v *AttestationVerifier) attester(iss string) *Attester {
	for i := range v.attesters {
		if v.attesters[i].Issuer == iss {
			return &v.attesters[i]
		}
	}
	return nil
}

// checkAttesters validates the trust list.
func checkAttesters(attesters []Attester, fetcher KeyFetcher) error {
	seen := map[string]bool{}
	for i, a := range attesters {
		switch {
		case a.Issuer == "":
			return newErr(ErrInvalidConfig, fmt.Sprintf("Attesters[%d]: empty Issuer", i))
		case seen[a.Issuer]:
			return newErr(ErrInvalidConfig, fmt.Sprintf("Attesters[%d]: duplicate Issuer", i))
		case (a.Keys != nil) == (a.JWKSURL != ""):
			return newErr(ErrInvalidConfig, fmt.Sprintf("Attesters[%d]: set exactly one of Keys and JWKSURL", i))
		case a.Keys != nil && len(a.Keys.Keys) == 0:
			return newErr(ErrInvalidConfig, fmt.Sprintf("Attesters[%d]: empty Keys", i))
		case a.JWKSURL != "" && fetcher == nil:
			return newErr(ErrInvalidConfig, fmt.Sprintf("Attesters[%d]: JWKSURL needs a Fetcher", i))
		}
		if a.JWKSURL != "" {
			if err := pass.CheckHTTPSURL(a.JWKSURL); err != nil {
				return wrapErr(ErrInvalidConfig, fmt.Sprintf("Attesters[%d]: JWKSURL", i), err)
			}
		}
		seen[a.Issuer] = true
	}
	return nil
}

type attestationWire struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Cnf      cnfClaim `json:"cnf"`
	IssuedAt int64    `json:"iat"`
	Expiry   int64    `json:"exp"`
}

// HarnessAttestation creates a harness attestation (§3.1.2) signed by k,
// the vendor's key: iss = issuer, sub = the verified agent identity (which
// must be the harness.id the Harness will send), cnf.jwk = the Harness's
// public holder key, typ "agentpass-attestation+jwt". It is the vendor side, used by
// attestation services and the devnet. A zero ttl means
// 5 minutes; a zero now means time.Now().
func (k *Key) HarnessAttestation(issuer, subject string, holderJWK json.RawMessage, ttl time.Duration, now time.Time) (string, error) {
	if issuer == "" || subject == "" {
		return "", fmt.Errorf("dpop: harness attestation: empty issuer or subject")
	}
	jwk, err := ParsePublicJWK(holderJWK)
	if err != nil {
		return "", fmt.Errorf("dpop: harness attestation: %w", err)
	}
	raw, err := jwk.MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("dpop: harness attestation: %w", err)
	}
	if now.IsZero() {
		now = time.Now()
	}
	return k.sign(typeAttestation, false, attestationWire{
		Issuer: issuer, Subject: subject, Cnf: cnfClaim{JWK: raw},
		IssuedAt: now.Unix(), Expiry: now.Add(orDefault(ttl, defaultAttestationTTL)).Unix(),
	})
}
