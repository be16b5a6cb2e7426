package dpop

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
	"github.com/agentpass-go/agentpass/pass"
)

// ProofParams describes a harness proof to create.
type ProofParams struct {
	// HarnessID is harness.id, the proof's iss. Required.
	HarnessID string
	// Audience is the Service origin, the proof's aud. Required; it is
	// serialised as an origin (lower-case scheme and host, no default port,
	// no path).
	Audience string
	// Method is the HTTP method of the redemption request (htm), e.g.
	// "POST". Optional, but our Harness always sets it.
	Method string
	// URL is the redemption URL (htu); query and fragment are dropped.
	// Optional, but our Harness always sets it.
	URL string
	// AgentPass is the pass value being redeemed; the proof carries its
	// hash (aph), never the value. Optional, but our Harness always sets it.
	AgentPass string
	// TTL is exp - iat. Zero means 60 seconds.
	TTL time.Duration
	// Now is the proof's iat. Zero means time.Now().
	Now time.Time
}

// ProofClaims are the verified claims of a harness proof.
type ProofClaims struct {
	Issuer, Audience, JTI, HTM, HTU, APH string
	IssuedAt, Expiry                     time.Time
}

// proofWire is the payload of a harness proof we create.
type proofWire struct {
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	JTI      string `json:"jti"`
	HTM      string `json:"htm,omitempty"`
	HTU      string `json:"htu,omitempty"`
	APH      string `json:"aph,omitempty"`
}

// HarnessProof creates a harness_proof JWT (§3.1.1) signed with k, with typ
// "agentpass-proof+jwt" and a fresh random jti, plus the holder-binding draft's htm,
// htu and aph, which tie the proof to one request and one pass. Send a new
// proof with every redemption request. A TTL above [DefaultMaxLifetime] is
// refused: every verifier with default settings would reject the proof.
func (k *Key) HarnessProof(p ProofParams) (string, error) {
	if p.HarnessID == "" {
		return "", fmt.Errorf("dpop: harness proof: empty harness id")
	}
	if p.TTL > DefaultMaxLifetime {
		return "", fmt.Errorf("dpop: harness proof: TTL %s exceeds %s, which verifiers refuse", p.TTL, DefaultMaxLifetime)
	}
	aud, err := pass.Origin(p.Audience)
	if err != nil {
		return "", fmt.Errorf("dpop: harness proof: audience: %w", err)
	}
	w := proofWire{Issuer: p.HarnessID, Audience: aud, HTM: p.Method}
	if p.URL != "" {
		if w.HTU, err = normalizeHTU(p.URL); err != nil {
			return "", fmt.Errorf("dpop: harness proof: %w", err)
		}
	}
	if p.AgentPass != "" {
		w.APH = PassHash(p.AgentPass)
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	w.IssuedAt = now.Unix()
	w.Expiry = now.Add(orDefault(p.TTL, defaultProofTTL)).Unix()
	if w.JTI, err = newJTI(); err != nil {
		return "", err
	}
	return k.sign(typeProof, false, w)
}

// ProofRequest is what the Service knows about the redemption request a
// harness proof must match.
type ProofRequest struct {
	// Method is the HTTP method of the request, compared with htm.
	Method string
	// URL is the URL the request was sent to, compared with htu after
	// normalisation (RFC 9449 §4.3: no query or fragment, lower-case scheme
	// and host, no default port).
	URL string
	// AgentPass is the presented pass value, compared with aph.
	AgentPass string
	// HarnessID, when set (from an Authority that reports harness.id),
	// must equal iss.
	HarnessID string
	// RequireBinding requires htm, htu and aph. When false they are
	// checked only when present, because a plain v0.1 Harness does not
	// send them. It is an input of each verification, not a setting of
	// the verifier, so the requirement can follow the pass being redeemed.
	RequireBinding bool
}

// ProofVerifierConfig configures [NewProofVerifier].
type ProofVerifierConfig struct {
	// Audience is this Service's origin. Required: an empty Audience is a
	// configuration error, not "skip the check".
	Audience string
	// Skew is the clock leeway for exp and iat. Zero means DefaultSkew
	// (60 s).
	Skew time.Duration
	// MaxLifetime bounds exp - iat. Zero means DefaultMaxLifetime (300 s);
	// at most 24 h, as is Skew.
	MaxLifetime time.Duration
	// Replay records (iss, jti) until exp + Skew. Required: use
	// NewMemoryReplayCache for one process, a shared store for replicas.
	Replay ReplayCache
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ProofVerifier verifies harness proofs at a Service (or at an Authority
// for its status endpoint). Create it with [NewProofVerifier]; the zero
// value refuses every proof. It is safe for concurrent use if its replay
// cache is.
type ProofVerifier struct {
	aud     string
	skew    time.Duration
	maxLife time.Duration
	replay  ReplayCache
	now     func() time.Time
}

// NewProofVerifier validates cfg and returns a verifier. Errors match
// ErrInvalidConfig.
func NewProofVerifier(cfg ProofVerifierConfig) (*ProofVerifier, error) {
	if cfg.Replay == nil {
		return nil, newErr(ErrInvalidConfig, "ProofVerifierConfig.Replay is nil")
	}
	if cfg.Audience == "" {
		return nil, newErr(ErrInvalidConfig, "ProofVerifierConfig.Audience is empty")
	}
	aud, err := pass.Origin(cfg.Audience)
	if err != nil {
		return nil, wrapErr(ErrInvalidConfig, "ProofVerifierConfig.Audience is not an origin", err)
	}
	if cfg.Skew < 0 || cfg.MaxLifetime < 0 {
		return nil, newErr(ErrInvalidConfig, "negative Skew or MaxLifetime")
	}
	if cfg.Skew > maxConfigLifetime || cfg.MaxLifetime > maxConfigLifetime {
		return nil, newErr(ErrInvalidConfig, "Skew or MaxLifetime above 24h")
	}
	return &ProofVerifier{
		aud:     aud,
		skew:    orDefault(cfg.Skew, DefaultSkew),
		maxLife: orDefault(cfg.MaxLifetime, DefaultMaxLifetime),
		replay:  cfg.Replay,
		now:     nowOr(cfg.Now),
	}, nil
}

// Proof is a harness proof parsed once by [ProofVerifier.Precheck], waiting
// for the holder key that [ProofVerifier.Complete] verifies it with.
type Proof struct {
	tok    *jwtcheck.Token
	claims ProofClaims // Complete's answer, in the Proof's allocation
}

// Verify checks a harness proof against cnf (the holder-binding JWK from
// the validation response) and the request it came with: Precheck, then
// Complete. Only a proof that passes every other check is recorded in the
// replay cache.
//
// Failures match ErrInvalidProof (a replay also matches ErrReplay); a
// verifier not made by NewProofVerifier returns ErrInvalidConfig; a replay
// cache failure is returned wrapped and matches neither.
func (v *ProofVerifier) Verify(ctx context.Context, jwt string, cnf json.RawMessage, req ProofRequest) (*ProofClaims, error) {
	p, err := v.Precheck(ctx, jwt, req)
	if err != nil {
		return nil, err
	}
	return v.Complete(ctx, p, cnf, req)
}

// Precheck parses a harness proof and runs, on its UNVERIFIED claims,
// every check that needs no holder key: header rules, claim presence and
// kind, times and lifetime, aud, iss (when req.HarnessID is set),
// htm/htu/aph, and, when the replay cache implements [ReplayLookup], that
// the jti is not yet recorded. A Service calls it before it asks the
// Authority to validate (and so consume) the pass, so that a proof that can
// never succeed does not cost the pass. It records nothing; pass the
// returned Proof to Complete once cnf is known.
func (v *ProofVerifier) Precheck(ctx context.Context, jwt string, req ProofRequest) (*Proof, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	tok, err := jwtcheck.Parse(jwt, jwtcheck.HarnessProof)
	if err != nil {
		return nil, checkErr(ErrInvalidProof, err)
	}
	if err := v.checkClaims(tok, req); err != nil {
		return nil, err
	}
	if l, ok := v.replay.(ReplayLookup); ok {
		seen, err := l.Contains(ctx, tok.Claims.Issuer, tok.Claims.ID)
		if err != nil {
			return nil, fmt.Errorf("dpop: replay lookup: %w", err)
		}
		if seen {
			return nil, wrapErr(ErrInvalidProof, "jti replayed", ErrReplay)
		}
	}
	return &Proof{tok: tok}, nil
}

// Complete finishes the verification of a prechecked proof: Check, then
// Record in the verifier's replay cache.
func (v *ProofVerifier) Complete(ctx context.Context, p *Proof, cnf json.RawMessage, req ProofRequest) (*ProofClaims, error) {
	claims, err := v.Check(p, cnf, req)
	if err != nil {
		return nil, err
	}
	if err := v.Record(ctx, p, nil); err != nil {
		return nil, err
	}
	return claims, nil
}

// Check is Complete without the replay step: the claim checks again with
// req (which may now name the harness and require the binding) and the
// signature by cnf. It records nothing: call Record once every later check
// of the request has passed or failed, so that a store can record the jti
// in the same transaction as the credential it writes.
func (v *ProofVerifier) Check(p *Proof, cnf json.RawMessage, req ProofRequest) (*ProofClaims, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	if p == nil || p.tok == nil {
		return nil, newErr(ErrInvalidProof, "no prechecked proof")
	}
	key, err := sharedPublicJWK(cnf) // only verified with
	if err != nil {
		return nil, wrapErr(ErrInvalidProof, "cnf.jwk", err)
	}
	tok := p.tok
	if err := v.checkClaims(tok, req); err != nil {
		return nil, err
	}
	if err := tok.Verify(key); err != nil {
		return nil, checkErr(ErrInvalidProof, err)
	}
	c := &tok.Claims
	p.claims = ProofClaims{
		Issuer: c.Issuer, Audience: c.Audience[0], JTI: c.ID,
		HTM: c.HTM, HTU: c.HTU, APH: c.APH,
		IssuedAt: c.IssuedAt.Time(), Expiry: c.Expiry.Time(),
	}
	return &p.claims, nil
}

// Record is the replay step of a proof Check accepted: it records (iss,
// jti) until exp + Skew and fails with ErrReplay (and ErrInvalidProof) when
// the pair was already recorded. It records in the verifier's replay cache,
// or in replay when that is not nil: a store's cache whose Seen records the
// pair in the same transaction as the store's own write, given the proof's
// iss as it is. A proof Check did not accept is refused, never recorded.
func (v *ProofVerifier) Record(ctx context.Context, p *Proof, replay ReplayCache) error {
	if err := v.check(); err != nil {
		return err
	}
	if p == nil || p.tok == nil {
		return newErr(ErrInvalidProof, "no prechecked proof")
	}
	if replay == nil {
		replay = v.replay
	}
	tok := p.tok
	if err := tok.Record(ctx, replay, tok.Claims.Issuer, tok.Claims.Expiry.Time().Add(v.skew)); err != nil {
		return checkErr(ErrInvalidProof, err)
	}
	return nil
}

func (v *ProofVerifier) check() error {
	if v == nil || v.replay == nil || v.aud == "" {
		return newErr(ErrInvalidConfig, "ProofVerifier not made by NewProofVerifier")
	}
	return nil
}

// checkClaims runs every claim check of a harness proof: presence, kind (a
// task attestation is not a proof), times, audience, issuer and the
// htm/htu/aph binding.
func (v *ProofVerifier) checkClaims(tok *jwtcheck.Token, req ProofRequest) error {
	c := &tok.Claims
	switch {
	case c.Issuer == "":
		return newErr(ErrInvalidProof, "missing iss")
	case len(c.Audience) == 0:
		return newErr(ErrInvalidProof, "missing aud")
	case c.ID == "":
		return newErr(ErrInvalidProof, "missing jti")
	case c.TaskID != nil || c.TaskDescriptionHash != nil:
		return newErr(ErrInvalidProof, "task attestation claims in a proof")
	}
	if err := jwtcheck.CheckTimes(tok, v.now(), jwtcheck.TimeRules{Skew: v.skew, MaxLifetime: v.maxLife}); err != nil {
		return checkErr(ErrInvalidProof, err)
	}
	if len(c.Audience) != 1 {
		return newErr(ErrInvalidProof, "aud must name exactly one Service")
	}
	if gotAud, err := pass.Origin(c.Audience[0]); err != nil || gotAud != v.aud {
		return newErr(ErrInvalidProof, "aud mismatch")
	}
	if req.HarnessID != "" && c.Issuer != req.HarnessID {
		return newErr(ErrInvalidProof, "iss mismatch")
	}
	return checkBinding(c, req)
}

// checkBinding compares htm, htu and aph with the request.
func checkBinding(c *claims, req ProofRequest) error {
	if req.RequireBinding {
		switch {
		case c.HTM == "":
			return newErr(ErrInvalidProof, "missing htm (binding required)")
		case c.HTU == "":
			return newErr(ErrInvalidProof, "missing htu (binding required)")
		case c.APH == "":
			return newErr(ErrInvalidProof, "missing aph (binding required)")
		}
	}
	if c.HTM != "" && (req.Method == "" || c.HTM != req.Method) {
		return newErr(ErrInvalidProof, "htm mismatch")
	}
	if c.HTU != "" && !sameHTU(c.HTU, req.URL) {
		return newErr(ErrInvalidProof, "htu mismatch")
	}
	if c.APH != "" {
		if req.AgentPass == "" || !aphMatches(c.APH, req.AgentPass) {
			return newErr(ErrInvalidProof, "aph mismatch")
		}
	}
	return nil
}

// aphMatches reports in constant time whether aph is PassHash(agentPass),
// computed on the stack: every proof is checked twice per redemption.
func aphMatches(aph, agentPass string) bool {
	var buf [256]byte // pass values are far shorter; a longer one grows
	sum := sha256.Sum256(append(buf[:0], agentPass...))
	var want [43]byte // base64url of 32 bytes, no padding
	base64.RawURLEncoding.Encode(want[:], sum[:])
	return subtle.ConstantTimeCompare([]byte(aph), want[:]) == 1
}

// PassHash returns the aph value for an AgentPass value: base64url (no
// padding) of the SHA-256 of its bytes.
func PassHash(agentPass string) string {
	sum := sha256.Sum256([]byte(agentPass))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// normalizeHTU returns the form of an http(s) URL used for htu: lower-case
// scheme and host, no default port, no user information, query or
// fragment, an empty path written "/", and percent-encoding normalised
// (RFC 9449 §4.3, RFC 3986 §6.2.2). Dot segments are not removed.
func normalizeHTU(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("htu: not a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "https" && scheme != "http") || u.Hostname() == "" || u.Opaque != "" {
		return "", fmt.Errorf("htu: not an absolute http(s) URL")
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		if net.ParseIP(host) == nil {
			return "", fmt.Errorf("htu: bad IPv6 host")
		}
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" && !(scheme == "https" && port == "443") && !(scheme == "http" && port == "80") {
		host += ":" + port
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	norm := url.URL{Scheme: scheme, Host: host, Path: p}
	return norm.String(), nil
}

// sameHTU reports whether two URLs are equal after normalizeHTU. Invalid
// URLs are never equal.
func sameHTU(a, b string) bool {
	nb, fixed, ok := expectedHTUs.normalized(b)
	if !ok {
		return false
	}
	if fixed && a == nb {
		return true // the usual case: the peer sent the normalised form
	}
	na, err := normalizeHTU(a)
	if err != nil {
		return false
	}
	return na == nb
}

// maxExpectedHTUs bounds the memo of normalised expected URLs; past it the
// memo starts again empty. Expected URLs are the verifier's own endpoints,
// a handful per deployment.
const maxExpectedHTUs = 1024

// htuMemo memoises normalizeHTU for the expected side of sameHTU, which
// would otherwise parse the same few URLs on every proof. Only URLs whose
// normal form is its own normal form are kept, so comparing a token's htu
// with it byte for byte is the same as comparing their normal forms.
type htuMemo struct {
	mu sync.Mutex
	m  map[string]string
}

var expectedHTUs htuMemo

// normalized returns normalizeHTU(raw), whether that form is its own
// normal form (fixed), and false when raw is not a valid htu.
func (h *htuMemo) normalized(raw string) (n string, fixed, ok bool) {
	h.mu.Lock()
	n, ok = h.m[raw]
	h.mu.Unlock()
	if ok {
		return n, true, true
	}
	n, err := normalizeHTU(raw)
	if err != nil {
		return "", false, false
	}
	if again, err := normalizeHTU(n); err != nil || again != n {
		return n, false, true // not a fixed point: not kept
	}
	h.mu.Lock()
	if h.m == nil || len(h.m) >= maxExpectedHTUs {
		h.m = make(map[string]string)
	}
	h.m[raw] = n
	h.mu.Unlock()
	return n, true, true
}

// newJTI returns 128 random bits, base64url.
func newJTI() (string, error) {
	id, err := jwtcheck.NewJTI()
	if err != nil {
		return "", fmt.Errorf("dpop: %w", err)
	}
	return id, nil
}
