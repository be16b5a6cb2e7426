// Package secevent signs and verifies the RFC 8417 security event tokens
// (SETs) an Authority sends a Service about the missions it redeemed.
//
// # Overview
//
// A SET is a JWS signed by the Authority's current key, with typ
// secevent+jwt and the claims iss, aud (the Service origin), iat, jti, txn
// (the mission history entry that caused it), sub_id (an opaque subject
// identifier, RFC 9493: the authorization_id) and exactly one event. It has
// no sub and no exp: a SET states a fact about a subject, and without them
// it cannot be mistaken for an assertion or a proof, whose verifiers need
// both (and refuse its typ).
//
// # Usage
//
//	raw, err := secevent.Sign(keys.Current(), set) // at the Authority
//
//	tok, err := secevent.Parse(body)               // at the Service
//	d := lookup(tok.Subject())                     // UNVERIFIED until Verify
//	set, err := tok.Verify(ctx, keys, d.JWKSURI, d.Authority, myOrigin)
//
// Every failure maps to an RFC 8935 error code with [Code].
package secevent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

// Event types. The CAEP ones are understood by any Shared Signals
// receiver; ours name the mission transitions CAEP has no word for.
const (
	CAEPPrefix = "https://schemas.openid.net/secevent/caep/event-type/"
	// ExtPrefix is the namespace of this SDK's event types.
	ExtPrefix = "https://agentpass-go.github.io/ext/events/"

	SessionRevoked      = CAEPPrefix + "session-revoked"
	TokenClaimsChange   = CAEPPrefix + "token-claims-change"
	MissionCompleted    = ExtPrefix + "mission-completed"
	MissionSuspended    = ExtPrefix + "mission-suspended"
	MissionResumed      = ExtPrefix + "mission-resumed"
	MissionStageChanged = ExtPrefix + "mission-stage-changed"
)

// Types lists every event type the SDK sends.
func Types() []string {
	return []string{SessionRevoked, TokenClaimsChange, MissionCompleted, MissionSuspended, MissionResumed, MissionStageChanged}
}

// Terminal reports whether events of type typ end the subject for good, so
// that they supersede anything still queued for it.
func Terminal(typ string) bool { return typ == SessionRevoked || typ == MissionCompleted }

// Initiating entities (CAEP).
const (
	InitiatorAdmin  = "admin"
	InitiatorUser   = "user"
	InitiatorPolicy = "policy"
	InitiatorSystem = "system"
)

// Limits.
const (
	// PushMaxAge bounds now - iat of a pushed SET. It exceeds the 15-minute
	// retry horizon of the transmitter, so a SET retried to the end is
	// still accepted.
	PushMaxAge = 30 * time.Minute
	// Skew is the clock leeway on iat.
	Skew = 60 * time.Second
	// ReplayLifetime is how long a receiver remembers a jti from the
	// moment it accepts the SET. A SET carries no exp, so this must cover
	// the whole push acceptance window: iat may be up to Skew ahead when
	// the SET is first accepted, and it is accepted until iat + PushMaxAge
	// + Skew.
	ReplayLifetime = PushMaxAge + 2*Skew
)

// SubjectFormat is the only sub_id format SETs carry (RFC 9493 opaque).
const SubjectFormat = "opaque"

// Mission is the agentpass_mission member of an event: where the mission
// stands after the change, so a receiver can order events by Version and
// never regress.
type Mission struct {
	ID         string `json:"id"`
	Version    int64  `json:"version,omitempty"`
	State      string `json:"state,omitempty"`
	PriorState string `json:"prior_state,omitempty"`
	Cause      string `json:"cause,omitempty"`
	Stage      string `json:"stage,omitempty"`
}

// Claims is the claims member of a token-claims-change event. Scope is
// space-delimited, as in RFC 8693 and RFC 9068.
type Claims struct {
	Scope string `json:"scope"`
}

// Event is the one event of a SET. Type is its key in the events claim.
type Event struct {
	Type             string            `json:"-"`
	Timestamp        int64             `json:"event_timestamp"`
	InitiatingEntity string            `json:"initiating_entity,omitempty"`
	ReasonAdmin      map[string]string `json:"reason_admin,omitempty"`
	Mission          *Mission          `json:"agentpass_mission,omitempty"`
	// Outcome is mission-completed's outcome.
	Outcome string `json:"outcome,omitempty"`
	// Scope is mission-stage-changed's new scope, space-delimited.
	Scope string `json:"scope,omitempty"`
	// Claims is token-claims-change's changed claims.
	Claims *Claims `json:"claims,omitempty"`
}

// SET is a security event token's content.
type SET struct {
	Issuer   string
	Audience string
	IssuedAt time.Time
	// JTI identifies the SET; Sign makes one when empty.
	JTI string
	// Txn is "<mission id>:<seq>" of the history entry that caused it,
	// shared by every SET of one cascade.
	Txn string
	// Subject is the opaque subject id: the authorization_id.
	Subject string
	Event   Event
}

type subID struct {
	Format string `json:"format"`
	ID     string `json:"id"`
}

type wireClaims struct {
	Issuer   string                     `json:"iss"`
	Audience string                     `json:"aud"`
	IssuedAt int64                      `json:"iat"`
	JTI      string                     `json:"jti"`
	Txn      string                     `json:"txn,omitempty"`
	SubID    subID                      `json:"sub_id"`
	Events   map[string]json.RawMessage `json:"events"`
}

// maxIDBytes bounds the subject, txn and mission id, as jti is bounded.
const maxIDBytes = 256

// Sign signs s with key and returns the compact SET and its jti.
func Sign(key *dpop.Key, s SET) (raw, jti string, err error) {
	switch {
	case key == nil:
		return "", "", errors.New("secevent: no signing key")
	case s.Issuer == "" || s.Audience == "" || s.Subject == "" || s.Event.Type == "" || s.IssuedAt.IsZero():
		return "", "", errors.New("secevent: Sign needs an issuer, an audience, a subject, an event type and iat")
	case len(s.Subject) > maxIDBytes || len(s.Txn) > maxIDBytes || len(s.JTI) > jwtcheck.MaxJTIBytes:
		return "", "", errors.New("secevent: subject, txn or jti too long")
	}
	if s.JTI == "" {
		if s.JTI, err = jwtcheck.NewJTI(); err != nil {
			return "", "", fmt.Errorf("secevent: %w", err)
		}
	}
	ev, err := json.Marshal(s.Event)
	if err != nil {
		return "", "", fmt.Errorf("secevent: encoding event: %w", err)
	}
	raw, err = jwtcheck.SignKey(key, jwtcheck.TypeSecurityEvent, wireClaims{
		Issuer: s.Issuer, Audience: s.Audience, IssuedAt: s.IssuedAt.Unix(), JTI: s.JTI, Txn: s.Txn,
		SubID:  subID{Format: SubjectFormat, ID: s.Subject},
		Events: map[string]json.RawMessage{s.Event.Type: ev},
	})
	if err != nil {
		return "", "", fmt.Errorf("secevent: %w", err)
	}
	return raw, s.JTI, nil
}

// RFC 8935 §2.3 error codes, each matched by the errors of that class.
var (
	ErrInvalidRequest  = errors.New("secevent: invalid_request")
	ErrInvalidKey      = errors.New("secevent: invalid_key")
	ErrInvalidIssuer   = errors.New("secevent: invalid_issuer")
	ErrInvalidAudience = errors.New("secevent: invalid_audience")
)

// Code returns the RFC 8935 err code of a Parse or Verify failure, or ""
// for an error of none of its classes (a key fetch that failed: the
// receiver should answer with a 5xx so the sender retries).
func Code(err error) string {
	for _, c := range []error{ErrInvalidRequest, ErrInvalidKey, ErrInvalidIssuer, ErrInvalidAudience} {
		if errors.Is(err, c) {
			return c.Error()[len("secevent: "):]
		}
	}
	return ""
}

func reject(class error, reason string) error { return fmt.Errorf("%w: %s", class, reason) }

func fromCheck(class error, err error) error {
	var e *jwtcheck.Error
	if errors.As(err, &e) {
		return reject(class, e.Reason)
	}
	return fmt.Errorf("secevent: %w", err)
}

// Token is a SET parsed once: its header passed the shared rules and its
// claims the SET profile, but nothing in it is trusted until
// [Token.Verify] succeeds.
type Token struct {
	tok *jwtcheck.Token
	set SET
}

// Parse decodes a SET and checks everything that needs no key: the header
// (typ, allow-listed alg, no key-locating member), the claims (no sub, no
// exp, a jti, an opaque sub_id, exactly one event object).
func Parse(raw string) (*Token, error) {
	tok, err := jwtcheck.Parse(raw, jwtcheck.SecurityEvent)
	if err != nil {
		return nil, fromCheck(ErrInvalidRequest, err)
	}
	c := &tok.Claims
	switch {
	case c.Subject != "":
		return nil, reject(ErrInvalidRequest, "sub present")
	case c.Expiry != nil:
		return nil, reject(ErrInvalidRequest, "exp present")
	case c.ID == "":
		return nil, reject(ErrInvalidRequest, "no jti")
	case c.Issuer == "":
		return nil, reject(ErrInvalidRequest, "no iss")
	case c.IssuedAt == nil:
		return nil, reject(ErrInvalidRequest, "no iat")
	case len(c.Audience) == 0:
		return nil, reject(ErrInvalidRequest, "no aud")
	case len(c.Txn) > maxIDBytes:
		return nil, reject(ErrInvalidRequest, "txn too long")
	}
	t := &Token{tok: tok, set: SET{Issuer: c.Issuer, IssuedAt: c.IssuedAt.Time(), JTI: c.ID, Txn: c.Txn}}
	var sub subID
	if err := strictUnmarshal(c.SubID, &sub); err != nil || sub.Format != SubjectFormat || sub.ID == "" || len(sub.ID) > maxIDBytes {
		return nil, reject(ErrInvalidRequest, "sub_id must be an opaque subject identifier")
	}
	t.set.Subject = sub.ID
	var events map[string]json.RawMessage
	if err := json.Unmarshal(c.Events, &events); err != nil || events == nil {
		return nil, reject(ErrInvalidRequest, "events is not an object")
	}
	if len(events) != 1 {
		return nil, reject(ErrInvalidRequest, "not exactly one event")
	}
	for typ, body := range events {
		if typ == "" || len(typ) > maxIDBytes {
			return nil, reject(ErrInvalidRequest, "bad event type")
		}
		if err := strictUnmarshal(body, &t.set.Event); err != nil {
			return nil, reject(ErrInvalidRequest, "malformed event")
		}
		t.set.Event.Type = typ
	}
	if m := t.set.Event.Mission; m != nil && (m.ID == "" || len(m.ID) > maxIDBytes || m.Version < 0) {
		return nil, reject(ErrInvalidRequest, "malformed agentpass_mission")
	}
	return t, nil
}

// strictUnmarshal decodes a JSON object into v, refusing anything else.
func strictUnmarshal(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not an object")
	}
	return json.Unmarshal(b, v)
}

// Subject returns the UNVERIFIED opaque subject (authorization_id), so the
// receiver can find whose keys to verify with. Never fetch anything named
// by the token itself.
func (t *Token) Subject() string { return t.set.Subject }

// Issuer returns the UNVERIFIED iss.
func (t *Token) Issuer() string { return t.set.Issuer }

// JTI returns the UNVERIFIED jti.
func (t *Token) JTI() string { return t.set.JTI }

// KeyFinder finds a public key by kid in the JWKS at jwksURL; the discovery
// client implements it with caching and a rate-limited refetch.
type KeyFinder interface {
	LookupKey(ctx context.Context, jwksURL, kid string) (*jose.JSONWebKey, error)
}

// Verify checks the SET against the Authority the receiver recorded for
// its subject: the signature with the key named by kid in the JWKS at
// jwksURL, iss equal to wantIss, and aud equal to (or containing only)
// audience. It does not bound iat (see [CheckPushAge]) and records no jti.
// A key lookup that fails for another reason than an unknown kid is
// returned outside the RFC 8935 classes, so the sender retries.
func (t *Token) Verify(ctx context.Context, keys KeyFinder, jwksURL, wantIss, audience string) (*SET, error) {
	switch {
	case t == nil || t.tok == nil:
		return nil, reject(ErrInvalidRequest, "missing")
	case keys == nil || jwksURL == "" || wantIss == "" || audience == "":
		// An empty expectation would skip its check.
		return nil, errors.New("secevent: Verify needs keys, a JWKS URL, an issuer and an audience")
	case t.tok.Kid == "":
		return nil, reject(ErrInvalidKey, "no kid")
	}
	key, err := keys.LookupKey(ctx, jwksURL, t.tok.Kid)
	if err != nil {
		if errors.Is(err, errKeyNotFound) || errors.Is(err, discovery.ErrKeyNotFound) {
			return nil, reject(ErrInvalidKey, "unknown kid")
		}
		return nil, fmt.Errorf("secevent: finding the key: %w", err)
	}
	if err := t.tok.Verify(key); err != nil {
		return nil, fromCheck(ErrInvalidKey, err)
	}
	if t.set.Issuer != wantIss {
		return nil, reject(ErrInvalidIssuer, "iss is not the subject's Authority")
	}
	if aud := t.tok.Claims.Audience; len(aud) != 1 || aud[0] != audience {
		return nil, reject(ErrInvalidAudience, "aud is not this Service")
	}
	set := t.set
	set.Audience = audience
	return &set, nil
}

// VerifyWith is Verify with a key the caller holds (an Authority checking
// its own SETs, a test).
func (t *Token) VerifyWith(key *jose.JSONWebKey, wantIss, audience string) (*SET, error) {
	return t.Verify(context.Background(), staticKey{key}, "static:", wantIss, audience)
}

// errKeyNotFound is what staticKey returns for another kid.
var errKeyNotFound = errors.New("secevent: key not found")

type staticKey struct{ k *jose.JSONWebKey }

func (s staticKey) LookupKey(_ context.Context, _, kid string) (*jose.JSONWebKey, error) {
	if s.k == nil || s.k.KeyID != kid {
		return nil, errKeyNotFound
	}
	return s.k, nil
}

// CheckPushAge bounds the iat of a pushed SET to [now - PushMaxAge, now +
// Skew]. Polled SETs arrive over an authenticated channel and may be
// older.
func (t *Token) CheckPushAge(now time.Time) error {
	if err := jwtcheck.CheckTimes(t.tok, now, jwtcheck.TimeRules{Skew: Skew, MaxAge: PushMaxAge}); err != nil {
		return fromCheck(ErrInvalidRequest, err)
	}
	return nil
}
