// Package assertion signs and verifies the JWT assertions Services and
// Authorities authenticate each other with: a Service calling an Authority's
// validate, authorization-check and close endpoints (§4.4, §5.4.1, §5.5.1),
// and an Authority calling a Service's available-scopes endpoint (§4.3).
//
// An assertion carries iss, aud, iat, exp and jti, travels as
// "Authorization: Bearer <jwt>", and is verified against the issuer's JWKS
// located through a trust source the verifier already has (never through a
// URL taken from the token, gap G-9).
package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/secret"
)

// Type is the typ header our assertions carry. Verifiers also accept a
// missing typ or "JWT" from plain v0.1 peers, but never another kind's typ.
const Type = "agentpass-assertion+jwt"

// Defaults (gap G-7).
const (
	DefaultTTL         = 60 * time.Second
	DefaultSkew        = 60 * time.Second
	DefaultMaxLifetime = 300 * time.Second
	maxTokenBytes      = 8 << 10
)

// algorithms is the allow-list verification uses: this package's own copy
// of dpop.Algorithms (asymmetric only, gap G-6), taken at initialisation so
// that a program changing the exported slice cannot weaken verification.
var algorithms = slices.Clone(dpop.Algorithms)

// ErrInvalid is matched by every verification failure.
var ErrInvalid = errors.New("assertion: invalid")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Claims are the verified claims of an assertion.
type Claims struct {
	Issuer   string
	Audience string
	JTI      string
	IssuedAt time.Time
	Expiry   time.Time
}

type wireClaims struct {
	Issuer   string   `json:"iss"`
	Audience audience `json:"aud"`
	IssuedAt int64    `json:"iat"`
	Expiry   int64    `json:"exp"`
	JTI      string   `json:"jti"`
}

// audience is the aud claim: a string, or (as JWT libraries often write it)
// an array holding exactly one string. Several audiences are refused: an
// assertion names one recipient.
type audience string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience(s)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil || len(list) != 1 {
		return errors.New("aud must be a string or an array of one string")
	}
	*a = audience(list[0])
	return nil
}

// Sign returns an assertion from iss to aud signed with key, valid for ttl
// (DefaultTTL when zero, at most DefaultMaxLifetime) from now.
func Sign(key *dpop.Key, iss, aud string, ttl time.Duration, now time.Time) (string, error) {
	if key == nil || iss == "" || aud == "" {
		return "", errors.New("assertion: Sign needs a key, an issuer and an audience")
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if ttl > DefaultMaxLifetime {
		ttl = DefaultMaxLifetime
	}
	return dpop.SignJWT(key, Type, wireClaims{
		Issuer: iss, Audience: audience(aud), IssuedAt: now.Unix(), Expiry: now.Add(ttl).Unix(), JTI: secret.ID(""),
	})
}

func parse(token string) (*jwt.JSONWebToken, error) {
	if token == "" {
		return nil, invalidf("missing")
	}
	if len(token) > maxTokenBytes {
		return nil, invalidf("too large")
	}
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		return nil, invalidf("malformed or disallowed algorithm: %v", err)
	}
	if len(tok.Headers) != 1 {
		return nil, invalidf("must have exactly one signature")
	}
	h := tok.Headers[0]
	if err := checkRawHeader(token); err != nil {
		return nil, err
	}
	if v, present := h.ExtraHeaders[jose.HeaderType]; present {
		typ, ok := v.(string)
		if !ok {
			return nil, invalidf("typ is not a string")
		}
		if typ != Type && !strings.EqualFold(typ, "JWT") {
			return nil, invalidf("wrong typ %q", trunc(typ, 40))
		}
	}
	return tok, nil
}

// checkRawHeader rejects headers that point at keys or certificates other
// than the ones the verifier chose (gap G-6), and critical extensions.
func checkRawHeader(token string) error {
	enc, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return invalidf("malformed header")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return invalidf("malformed header")
	}
	for _, name := range []string{"jwk", "jku", "x5u", "x5c", "crit"} {
		if _, ok := m[name]; ok {
			return invalidf("header %q is not accepted", name)
		}
	}
	return nil
}

// PeekIssuer returns the UNVERIFIED iss of an assertion, so a verifier can
// choose which of its own trust sources to consult. Never fetch a URL derived
// from it without first mapping it to a trusted configuration.
func PeekIssuer(token string) (string, error) {
	tok, err := parse(token)
	if err != nil {
		return "", err
	}
	var c wireClaims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return "", invalidf("claims: %v", err)
	}
	if c.Issuer == "" {
		return "", invalidf("no iss")
	}
	return c.Issuer, nil
}

// KeyFinder finds a public key by kid in the JWKS at jwksURL. The discovery
// client implements it with caching and rate-limited refetching.
type KeyFinder interface {
	LookupKey(ctx context.Context, jwksURL, kid string) (*jose.JSONWebKey, error)
}

// Verifier verifies assertions. The zero value is not usable: Keys is
// required. It is safe for concurrent use.
type Verifier struct {
	Keys        KeyFinder
	Skew        time.Duration    // default DefaultSkew
	MaxLifetime time.Duration    // exp - iat bound; default DefaultMaxLifetime
	Now         func() time.Time // default time.Now
}

// Verify checks the assertion's signature against the key named by its kid
// in the JWKS at jwksURL, that iss is wantIss and aud is wantAud exactly,
// and its times. Empty expectations are an error, never "skip the check".
func (v *Verifier) Verify(ctx context.Context, token, jwksURL, wantIss, wantAud string) (*Claims, error) {
	if v == nil || v.Keys == nil || jwksURL == "" || wantIss == "" || wantAud == "" {
		return nil, errors.New("assertion: Verify needs Keys, a JWKS URL, an issuer and an audience")
	}
	tok, err := parse(token)
	if err != nil {
		return nil, err
	}
	h := tok.Headers[0]
	key, err := v.Keys.LookupKey(ctx, jwksURL, h.KeyID)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key %q not found: %w", ErrInvalid, h.KeyID, err)
	}
	if err := checkKey(key, h.Algorithm); err != nil {
		return nil, err
	}
	var c wireClaims
	if err := tok.Claims(key.Key, &c); err != nil {
		return nil, invalidf("signature: %v", err)
	}
	if c.Issuer != wantIss {
		return nil, invalidf("iss %q is not %q", c.Issuer, wantIss)
	}
	if string(c.Audience) != wantAud {
		return nil, invalidf("aud is not %q", wantAud)
	}
	if c.IssuedAt == 0 || c.Expiry == 0 {
		return nil, invalidf("iat and exp are required")
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	skew := v.Skew
	if skew <= 0 {
		skew = DefaultSkew
	}
	maxLife := v.MaxLifetime
	if maxLife <= 0 {
		maxLife = DefaultMaxLifetime
	}
	iat, exp := time.Unix(c.IssuedAt, 0), time.Unix(c.Expiry, 0)
	switch {
	case !now.Before(exp.Add(skew)):
		return nil, invalidf("expired")
	case iat.After(now.Add(skew)):
		return nil, invalidf("issued in the future")
	case exp.Sub(iat) > maxLife:
		return nil, invalidf("lifetime exceeds %s", maxLife)
	case !exp.After(iat):
		return nil, invalidf("exp is not after iat")
	}
	return &Claims{Issuer: c.Issuer, Audience: string(c.Audience), JTI: c.JTI, IssuedAt: iat, Expiry: exp}, nil
}

// checkKey applies the key rules of gap G-6 to the key a KeyFinder
// returned, before it verifies anything: a public signing key of a
// supported type and size (P-256, P-384, Ed25519, RSA of at least
// dpop.MinRSABits) that fits the token's algorithm and the key's own alg.
func checkKey(key *jose.JSONWebKey, alg string) error {
	if key == nil || !key.IsPublic() {
		return invalidf("no public key for the token's kid")
	}
	if key.Use != "" && key.Use != "sig" {
		return invalidf("key is not a signing key")
	}
	if key.Algorithm != "" && key.Algorithm != alg {
		return invalidf("key does not fit the token's algorithm")
	}
	fits := false
	switch p := key.Key.(type) {
	case *ecdsa.PublicKey:
		fits = alg == string(jose.ES256) && p.Curve == elliptic.P256() || alg == string(jose.ES384) && p.Curve == elliptic.P384()
	case ed25519.PublicKey:
		fits = alg == string(jose.EdDSA) && len(p) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		fits = (alg == string(jose.RS256) || alg == string(jose.PS256)) && p.N != nil && p.N.BitLen() >= dpop.MinRSABits
	}
	if !fits {
		return invalidf("key type or size does not fit the token's algorithm")
	}
	return nil
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
