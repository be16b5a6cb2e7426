// Package assertion signs and verifies the JWT assertions Services and
// Authorities authenticate each other with: a Service calling an Authority's
// validate, authorization-check and close endpoints (§4.4, §5.4.1, §5.5.1),
// and an Authority calling a Service's available-scopes endpoint (§4.3).
//
// # Overview
//
// The caller signs with [Sign]. The receiver verifies in two steps: [Parse]
// gives the unverified issuer, the receiver maps it to a configuration
// through its own trust sources, and [Verifier.Verify] checks the token
// against that configuration's JWKS and authority.
//
// # Usage
//
//	tok, err := assertion.Sign(keys.Current(), myOrigin, authority, 0, now)
//	req.Header.Set("Authorization", "Bearer "+tok)
//
//	v, err := assertion.NewVerifier(assertion.Config{Keys: discoveryClient,
//		Audience: myOrigin, Replay: replayCache})
//	t, err := assertion.Parse(bearer)
//	cfg := trustedConfigFor(t.Issuer()) // never a URL taken from the token
//	claims, err := v.Verify(ctx, t, cfg.JWKSURI, cfg.Authority)
//
// An assertion carries iss, aud, iat, exp and jti and travels as
// "Authorization: Bearer <jwt>". Its keys are located only through a trust
// source the verifier already has: a JWKS URL taken from the token would let
// anyone sign for any issuer, and point our fetches anywhere.
package assertion

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

// Type is the typ header our assertions carry. Verifiers also accept a
// missing typ or "JWT" from plain v0.1 peers, but never another kind's typ.
const Type = jwtcheck.TypeAssertion

// Defaults: short lifetimes, because an assertion authenticates one call.
const (
	DefaultTTL         = 60 * time.Second
	DefaultSkew        = 60 * time.Second
	DefaultMaxLifetime = 300 * time.Second

	maxConfigLifetime = 24 * time.Hour // cap of Config.Skew and MaxLifetime
)

// ErrInvalid is matched by every verification failure.
var ErrInvalid = errors.New("assertion: invalid")

// ErrReplay is matched, with ErrInvalid, by an assertion whose jti was
// already accepted.
var ErrReplay = errors.New("assertion: replayed jti")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// fromCheck maps a failure of the shared pipeline to ErrInvalid; a replay
// cache failure stays outside ErrInvalid (the caller answers "try again").
func fromCheck(err error) error {
	if err == nil {
		// Before e is declared: errors.As moves it to the heap, which
		// every verified assertion paid for.
		return nil
	}
	var e *jwtcheck.Error
	switch {
	case !errors.As(err, &e):
		return fmt.Errorf("assertion: %w", err)
	case errors.Is(err, jwtcheck.ErrReplay):
		return fmt.Errorf("%w: %w", ErrInvalid, ErrReplay)
	}
	return fmt.Errorf("%w: %s", ErrInvalid, e.Reason)
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
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
}

// Sign returns an assertion from iss to aud signed with key, valid for ttl
// (DefaultTTL when zero, at most DefaultMaxLifetime) from now, with a fresh
// jti.
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
	return jwtcheck.SignKey(key, Type, wireClaims{
		Issuer: iss, Audience: aud, IssuedAt: now.Unix(), Expiry: now.Add(ttl).Unix(),
	})
}

// Token is an assertion parsed once: its header passed the shared rules
// and its claims are decoded, but nothing in it is trusted until
// [Verifier.Verify] succeeds. A Token belongs to one request: it is not
// safe for concurrent use.
type Token struct {
	tok *jwtcheck.Token
	// ns is the issuer the replay cache records under, made once: Check
	// looks it up and Record records it.
	ns string
}

// replayIssuer returns the issuer t's jti is recorded under.
func (t *Token) replayIssuer() string {
	if t.ns == "" {
		t.ns = "assertion:" + t.tok.Claims.Issuer
	}
	return t.ns
}

// Parse decodes an assertion and checks everything that needs no key. The
// caller reads the UNVERIFIED [Token.Issuer] to choose which of its own
// trust sources to consult, then calls Verify with the same Token.
func Parse(token string) (*Token, error) {
	if token == "" {
		return nil, invalidf("missing")
	}
	t, err := jwtcheck.Parse(token, jwtcheck.Assertion)
	if err != nil {
		return nil, fromCheck(err)
	}
	if t.Claims.Issuer == "" {
		return nil, invalidf("no iss")
	}
	return &Token{tok: t}, nil
}

// Issuer returns the UNVERIFIED iss. Never fetch a URL derived from it
// without first mapping it to a trusted configuration.
func (t *Token) Issuer() string { return t.tok.Claims.Issuer }

// KeyFinder finds a public key by kid in the JWKS at jwksURL. The discovery
// client implements it with caching and rate-limited refetching.
type KeyFinder interface {
	LookupKey(ctx context.Context, jwksURL, kid string) (*jose.JSONWebKey, error)
}

// Config configures [NewVerifier].
type Config struct {
	// Keys finds the issuer's keys. Required.
	Keys KeyFinder
	// Audience is this party's identifier, the aud every assertion must
	// carry. Required.
	Audience string
	// Replay records (iss, jti) until exp + Skew, so an assertion is
	// accepted once. Required. An assertion without jti (a plain v0.1
	// peer) cannot be recorded and is accepted; ours always carry one.
	Replay dpop.ReplayCache
	// Skew is the clock leeway. Zero means DefaultSkew.
	Skew time.Duration
	// MaxLifetime bounds exp - iat. Zero means DefaultMaxLifetime; at
	// most 24 h, as is Skew.
	MaxLifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier verifies assertions. Create it with [NewVerifier]; the zero
// value refuses every assertion. It is safe for concurrent use if its
// KeyFinder and replay cache are.
type Verifier struct {
	keys    KeyFinder
	aud     string
	replay  dpop.ReplayCache
	skew    time.Duration
	maxLife time.Duration
	now     func() time.Time
}

// NewVerifier validates cfg and returns a verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	switch {
	case cfg.Keys == nil:
		return nil, errors.New("assertion: Config.Keys is nil")
	case cfg.Audience == "":
		return nil, errors.New("assertion: Config.Audience is empty")
	case cfg.Replay == nil:
		return nil, errors.New("assertion: Config.Replay is nil")
	case cfg.Skew < 0 || cfg.MaxLifetime < 0:
		return nil, errors.New("assertion: negative Skew or MaxLifetime")
	case cfg.Skew > maxConfigLifetime || cfg.MaxLifetime > maxConfigLifetime:
		// A replay record lives as long as an assertion is acceptable.
		return nil, errors.New("assertion: Skew or MaxLifetime above 24h")
	}
	v := &Verifier{keys: cfg.Keys, aud: cfg.Audience, replay: cfg.Replay, skew: cfg.Skew, maxLife: cfg.MaxLifetime, now: cfg.Now}
	if v.skew == 0 {
		v.skew = DefaultSkew
	}
	if v.maxLife == 0 {
		v.maxLife = DefaultMaxLifetime
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Precheck runs the checks of Verify that need neither a key nor the
// network: the audience and the times. A caller that must discover the
// issuer before it can verify (an Authority finding a Service's keys) calls
// it first, so a junk or expired token costs no DNS query or fetch.
func (v *Verifier) Precheck(t *Token) error {
	if v == nil || v.aud == "" {
		return errors.New("assertion: Verifier not made by NewVerifier")
	}
	if t == nil || t.tok == nil {
		return invalidf("missing")
	}
	c := &t.tok.Claims
	if len(c.Audience) != 1 || c.Audience[0] != v.aud {
		return invalidf("aud is not %q", v.aud)
	}
	if t.tok.Kid == "" {
		return invalidf("no kid")
	}
	return fromCheck(jwtcheck.CheckTimes(t.tok, v.now(), jwtcheck.TimeRules{Skew: v.skew, MaxLifetime: v.maxLife}))
}

// Verify completes the verification of a parsed assertion: the signature
// with the key named by its kid in the JWKS at jwksURL (a URL the caller
// found through its own trust source), iss equal to wantIss, aud equal to
// the verifier's Audience, the times (iat, exp, nbf, lifetime), and last
// the jti replay step. Failures match ErrInvalid (a replay also matches
// ErrReplay); a replay cache failure matches neither.
//
// The replay step is the one atomic record, with no lookup before it (as
// Check makes): a replay is refused by the record itself.
func (v *Verifier) Verify(ctx context.Context, t *Token, jwksURL, wantIss string) (*Claims, error) {
	c, err := v.check(ctx, t, jwksURL, wantIss, false)
	if err != nil {
		return nil, err
	}
	if err := v.Record(ctx, t); err != nil {
		return nil, err
	}
	return c, nil
}

// Check is Verify without recording the jti: it refuses a jti already
// recorded (when the replay cache can look one up, see dpop.ReplayLookup)
// but records nothing. A caller whose request may fail for reasons of the
// request itself (an unknown pass, an unknown authorization) calls Record
// only once the request succeeded, so assertions spent on failing requests
// take no room in the cache: a party that can sign assertions (any
// discoverable Service) cannot fill it with them.
func (v *Verifier) Check(ctx context.Context, t *Token, jwksURL, wantIss string) (*Claims, error) {
	return v.check(ctx, t, jwksURL, wantIss, true)
}

// VerifyUnrecorded is Verify with its replay step left to the caller,
// which must call [Verifier.RecordIn] (or Record) before it acts on the
// request: it neither looks the jti up nor records it. It lets a store
// carry the record in the round trip of its own first statement.
func (v *Verifier) VerifyUnrecorded(ctx context.Context, t *Token, jwksURL, wantIss string) (*Claims, error) {
	return v.check(ctx, t, jwksURL, wantIss, false)
}

// check is Check, looking the jti up only when lookup is set.
func (v *Verifier) check(ctx context.Context, t *Token, jwksURL, wantIss string, lookup bool) (*Claims, error) {
	if v == nil || v.keys == nil || v.replay == nil || v.aud == "" {
		return nil, errors.New("assertion: Verifier not made by NewVerifier")
	}
	if t == nil || t.tok == nil {
		return nil, invalidf("missing")
	}
	if jwksURL == "" || wantIss == "" {
		return nil, errors.New("assertion: Verify needs a JWKS URL and an issuer")
	}
	tok := t.tok
	c := &tok.Claims
	// Cheap checks first: a wrong issuer or audience costs no key fetch.
	if c.Issuer != wantIss {
		return nil, invalidf("iss %q is not %q", truncate(c.Issuer, 100), wantIss)
	}
	if err := v.Precheck(t); err != nil {
		return nil, err
	}
	key, err := v.keys.LookupKey(ctx, jwksURL, tok.Kid)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key %q not found: %w", ErrInvalid, truncate(tok.Kid, 100), err)
	}
	if key != nil && !key.IsPublic() {
		return nil, invalidf("no public key for the token's kid")
	}
	if err := tok.Verify(key); err != nil {
		return nil, fromCheck(err)
	}
	if l, ok := v.replay.(dpop.ReplayLookup); ok && lookup && c.ID != "" {
		seen, err := l.Contains(ctx, t.replayIssuer(), c.ID)
		if err != nil {
			return nil, err
		}
		if seen {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, ErrReplay)
		}
	}
	return &Claims{Issuer: c.Issuer, Audience: c.Audience[0], JTI: c.ID, IssuedAt: c.IssuedAt.Time(), Expiry: c.Expiry.Time()}, nil
}

// Record is the replay step of a token that Check accepted: it records
// (iss, jti) and refuses a jti recorded meanwhile. A token without jti
// (a plain v0.1 peer) records nothing.
func (v *Verifier) Record(ctx context.Context, t *Token) error {
	if v == nil || v.replay == nil {
		return errors.New("assertion: Verifier not made by NewVerifier")
	}
	return v.RecordIn(ctx, t, v.replay)
}

// RecordIn is Record into cache instead of the verifier's own: a cache
// that records into the same place (a store's, sending the record with its
// own statements), under the same namespace. Like Record it refuses a
// token whose signature was not verified, and records nothing for a token
// without jti: cache.Seen is then not called.
func (v *Verifier) RecordIn(ctx context.Context, t *Token, cache dpop.ReplayCache) error {
	if v == nil || v.aud == "" {
		return errors.New("assertion: Verifier not made by NewVerifier")
	}
	if cache == nil {
		return errors.New("assertion: RecordIn needs a replay cache")
	}
	if t == nil || t.tok == nil {
		return invalidf("missing")
	}
	c := &t.tok.Claims
	if c.ID == "" {
		return nil
	}
	return fromCheck(t.tok.Record(ctx, cache, t.replayIssuer(), c.Expiry.Time().Add(v.skew)))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
