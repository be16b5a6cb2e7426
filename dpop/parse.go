package dpop

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// maxTokenBytes bounds every compact JWT we parse.
const maxTokenBytes = 16 << 10

// parseRules says which header a kind of token may carry.
type parseRules struct {
	kind       error  // sentinel for failures
	typ        string // the kind's typ header value
	requireTyp bool   // typ must be present (DPoP)
	allowJWK   bool   // the jwk header is required (DPoP) instead of forbidden
}

// token is a parsed, not yet verified, compact JWS.
type token struct {
	jws *jose.JSONWebSignature
	alg jose.SignatureAlgorithm
	kid string
	typ string
	jwk *jose.JSONWebKey
	// jwkRaw is the raw jwk header member (DPoP only).
	jwkRaw json.RawMessage
}

// forbiddenHeaders are header members we never honour (G-6): keys come only
// from cnf or a pinned JWKS, never from a URL or certificate in the token;
// crit names extensions we do not implement; b64=false changes what is
// signed.
var forbiddenHeaders = []string{"jku", "x5u", "x5c", "crit", "b64", "enc", "zip"}

// parseToken decodes a compact JWS and checks its header, before any
// signature verification.
func parseToken(raw string, r parseRules) (*token, error) {
	if raw == "" {
		return nil, newErr(r.kind, "empty token")
	}
	if len(raw) > maxTokenBytes {
		return nil, newErr(r.kind, "token too large")
	}
	if strings.Count(raw, ".") != 2 {
		return nil, newErr(r.kind, "not a compact JWS")
	}
	h64, _, _ := strings.Cut(raw, ".")
	hb, err := base64.RawURLEncoding.Strict().DecodeString(h64)
	if err != nil {
		return nil, newErr(r.kind, "malformed header encoding")
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(hb, &header); err != nil || header == nil {
		return nil, newErr(r.kind, "header is not a JSON object")
	}
	for _, name := range forbiddenHeaders {
		if _, ok := header[name]; ok {
			return nil, newErr(r.kind, "forbidden header "+name)
		}
	}
	_, hasJWK := header["jwk"]
	switch {
	case hasJWK && !r.allowJWK:
		return nil, newErr(r.kind, "forbidden header jwk")
	case !hasJWK && r.allowJWK:
		return nil, newErr(r.kind, "missing jwk header")
	}
	var alg string
	if err := json.Unmarshal(header["alg"], &alg); err != nil || alg == "" {
		return nil, newErr(r.kind, "missing alg")
	}
	if !allowed(jose.SignatureAlgorithm(alg)) {
		// Covers "none" and every HMAC algorithm.
		return nil, newErr(r.kind, fmt.Sprintf("alg %q not allowed", truncate(alg, 16)))
	}
	t := &token{alg: jose.SignatureAlgorithm(alg), jwkRaw: header["jwk"]}
	if v, ok := header["typ"]; ok {
		if err := json.Unmarshal(v, &t.typ); err != nil {
			return nil, newErr(r.kind, "typ is not a string")
		}
	}
	if err := checkTyp(t.typ, r); err != nil {
		return nil, err
	}
	jws, err := jose.ParseSignedCompact(raw, allowedAlgs)
	if err != nil {
		return nil, wrapErr(r.kind, "malformed JWS", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, newErr(r.kind, "not exactly one signature")
	}
	h := jws.Signatures[0].Header
	t.jws, t.kid, t.jwk = jws, h.KeyID, h.JSONWebKey
	return t, nil
}

// checkTyp applies the typ rules of G-8 (see the Type constants).
func checkTyp(typ string, r parseRules) error {
	if r.requireTyp {
		if !strings.EqualFold(typ, r.typ) {
			return newErr(r.kind, "typ must be "+r.typ)
		}
		return nil
	}
	if typ == "" || strings.EqualFold(typ, "JWT") || strings.EqualFold(typ, r.typ) {
		return nil
	}
	return newErr(r.kind, fmt.Sprintf("wrong typ %q", truncate(typ, 40)))
}

// verify checks the signature of t with key and returns the payload.
func (t *token) verify(key *jose.JSONWebKey, kind error) ([]byte, error) {
	if key == nil {
		return nil, newErr(kind, "no key")
	}
	if !algFits(key.Key, t.alg) {
		return nil, newErr(kind, fmt.Sprintf("alg %s does not fit the key", t.alg))
	}
	if key.Algorithm != "" && key.Algorithm != string(t.alg) {
		return nil, newErr(kind, "alg differs from the key's alg")
	}
	payload, err := t.jws.Verify(key.Key)
	if err != nil {
		return nil, newErr(kind, "bad signature")
	}
	return payload, nil
}

// claims is the union of every claim this package reads. One struct for
// every kind makes kind-confusion checks (G-8) a matter of presence.
type claims struct {
	Issuer              string           `json:"iss,omitempty"`
	Subject             string           `json:"sub,omitempty"`
	Audience            jwt.Audience     `json:"aud,omitempty"`
	IssuedAt            *jwt.NumericDate `json:"iat,omitempty"`
	Expiry              *jwt.NumericDate `json:"exp,omitempty"`
	NotBefore           *jwt.NumericDate `json:"nbf,omitempty"`
	ID                  string           `json:"jti,omitempty"`
	HTM                 string           `json:"htm,omitempty"`
	HTU                 string           `json:"htu,omitempty"`
	APH                 string           `json:"aph,omitempty"`
	ATH                 string           `json:"ath,omitempty"`
	Nonce               string           `json:"nonce,omitempty"`
	TaskID              *string          `json:"task_id,omitempty"`
	TaskDescriptionHash *string          `json:"task_description_hash,omitempty"`
	Cnf                 *cnfClaim        `json:"cnf,omitempty"`
}

type cnfClaim struct {
	JWK json.RawMessage `json:"jwk,omitempty"`
	JKT string          `json:"jkt,omitempty"`
}

func decodeClaims(payload []byte, kind error) (*claims, error) {
	payload = bytes.TrimSpace(payload)
	if len(payload) == 0 || payload[0] != '{' {
		return nil, newErr(kind, "claims are not a JSON object")
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, newErr(kind, "malformed claims")
	}
	return &c, nil
}

// checkTimes validates iat, exp and nbf against now (G-7): exp and iat are
// required, the token must not be expired (with skew), iat and nbf must not
// be in the future beyond skew, and exp - iat must be positive and at most
// maxLife.
func checkTimes(c *claims, kind error, now time.Time, skew, maxLife time.Duration) error {
	if c.IssuedAt == nil {
		return newErr(kind, "missing iat")
	}
	if c.Expiry == nil {
		return newErr(kind, "missing exp")
	}
	iat, exp := c.IssuedAt.Time(), c.Expiry.Time()
	if !now.Before(exp.Add(skew)) {
		return newErr(kind, "expired")
	}
	if iat.After(now.Add(skew)) {
		return newErr(kind, "iat in the future")
	}
	if c.NotBefore != nil && c.NotBefore.Time().After(now.Add(skew)) {
		return newErr(kind, "not yet valid (nbf)")
	}
	if !exp.After(iat) {
		return newErr(kind, "exp not after iat")
	}
	if exp.Sub(iat) > maxLife {
		return newErr(kind, "lifetime exceeds maximum")
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func nowFunc(f func() time.Time) time.Time {
	if f == nil {
		return time.Now()
	}
	return f()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
