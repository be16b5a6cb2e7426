package jwtcheck

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/agentpass-go/agentpass/internal/jsonscan"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxJTIBytes bounds the jti of every kind, so a replay cache entry stays
// small whatever the peer sends.
const MaxJTIBytes = 256

// forbiddenHeaders are never honoured: keys come from cnf or a pinned
// JWKS, never from a URL or certificate in the token; crit names
// extensions we do not implement; b64=false changes what is signed; enc
// and zip belong to JWE, not to a signed token.
var forbiddenHeaders = []string{"jku", "x5u", "x5c", "crit", "b64", "enc", "zip"}

// Claims is the union of every claim a kind reads. One struct for every
// kind makes kind-confusion checks a matter of presence.
type Claims struct {
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
	Cnf                 *Cnf             `json:"cnf,omitempty"`
	Events              json.RawMessage  `json:"events,omitempty"`
	Txn                 string           `json:"txn,omitempty"`
	SubID               json.RawMessage  `json:"sub_id,omitempty"`
}

// Cnf is the confirmation claim (RFC 7800, RFC 9449).
type Cnf struct {
	JWK json.RawMessage `json:"jwk,omitempty"`
	JKT string          `json:"jkt,omitempty"`
}

// Token is a compact JWS parsed once. Its header passed the profile's
// rules; its claims are decoded but not trusted until [Token.Verify]
// succeeds.
type Token struct {
	// Profile is the kind the token was parsed as.
	Profile *Profile
	// Alg is the allow-listed algorithm of the header.
	Alg jose.SignatureAlgorithm
	// Kid is the kid header, "" when absent.
	Kid string
	// Typ is the typ header, "" when absent.
	Typ string
	// JWK is the raw jwk header (profiles with EmbeddedJWK only).
	JWK json.RawMessage
	// Claims are the decoded claims: UNVERIFIED until Verify succeeds.
	Claims Claims

	input    []byte // header.payload, what the signature covers
	sig      []byte
	verified bool
}

// Parse decodes raw as a token of kind p and checks everything that needs
// no key: size, compact serialisation, strict base64url in every part, the
// header rules, the algorithm allow-list, and claims that form a JSON
// object with a bounded jti. Member names of the header and claims are
// matched exactly and must be unique. It never verifies the signature.
func Parse(raw string, p *Profile) (*Token, error) {
	p.parses.Add(1)
	switch {
	case raw == "":
		return nil, fail("empty token")
	case len(raw) > p.MaxBytes:
		return nil, fail("token too large")
	case strings.Count(raw, ".") != 2:
		return nil, fail("not a compact JWS")
	}
	// Go's decoder skips CR and LF even in strict mode: refuse anything
	// outside the base64url alphabet first, so one token has one encoding.
	for i := 0; i < len(raw); i++ {
		if !isB64URL(raw[i]) && raw[i] != '.' {
			return nil, fail("malformed encoding")
		}
	}
	h64, rest, _ := strings.Cut(raw, ".")
	p64, s64, _ := strings.Cut(rest, ".")
	// One buffer for the signed input, which Verify hashes as bytes, and
	// the three decoded parts.
	enc := base64.RawURLEncoding.Strict()
	inputLen := len(h64) + 1 + len(p64)
	buf := make([]byte, inputLen+enc.DecodedLen(len(h64))+enc.DecodedLen(len(p64))+enc.DecodedLen(len(s64)))
	input := buf[:copy(buf, raw[:inputLen]):inputLen]
	buf = buf[inputLen:]
	hb, buf, err := decodePart(enc, buf, h64)
	if err != nil {
		return nil, fail("malformed header encoding")
	}
	pb, buf, err := decodePart(enc, buf, p64)
	if err != nil {
		return nil, fail("malformed payload encoding")
	}
	sig, _, err := decodePart(enc, buf, s64)
	if err != nil {
		return nil, fail("malformed signature encoding")
	}
	t := &Token{Profile: p, input: input, sig: sig}
	if err := t.parseHeader(hb); err != nil {
		return nil, err
	}
	if err := decodeClaims(pb, &t.Claims); err != nil {
		return nil, err
	}
	return t, nil
}

// decodePart decodes s into the front of buf and returns the decoded
// bytes (capacity cut, so nothing appends into the next part) and the rest
// of buf.
func decodePart(enc *base64.Encoding, buf []byte, s string) (part, rest []byte, err error) {
	n, err := enc.Decode(buf, []byte(s))
	if err != nil {
		return nil, nil, err
	}
	return buf[:n:n], buf[n:], nil
}

func isB64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func (t *Token) parseHeader(hb []byte) error {
	p := t.Profile
	hasJWK := false
	err := members(hb, func(name, raw []byte) error {
		var err error
		switch string(name) {
		case "alg":
			// Allowed algorithms and the profile's typ are the values
			// nearly every token carries: taken without a copy.
			if a, ok := knownString(raw, algorithms); ok {
				t.Alg = a
			} else {
				err = jsonString(raw, (*string)(&t.Alg))
			}
		case "kid":
			err = jsonString(raw, &t.Kid)
		case "typ":
			if typ, ok := knownString(raw, []string{p.Typ}); ok {
				t.Typ = typ
			} else {
				err = jsonString(raw, &t.Typ)
			}
		case "jwk":
			if !p.EmbeddedJWK {
				return fail("forbidden header jwk")
			}
			hasJWK, t.JWK = true, raw
		default:
			// Any case: names are case-sensitive, but a peer library that
			// matched them loosely must not find one of these either.
			if i := slices.IndexFunc(forbiddenHeaders, func(f string) bool { return bytes.EqualFold([]byte(f), name) }); i >= 0 {
				return fail("forbidden header " + forbiddenHeaders[i])
			}
		}
		if err != nil {
			return fail("malformed header")
		}
		return nil
	})
	switch {
	case errors.Is(err, errNotObject) || errors.Is(err, errSyntax):
		return fail("header is not a JSON object")
	case errors.Is(err, errDuplicate):
		return fail("duplicate header member")
	case err != nil:
		return err
	case !hasJWK && p.EmbeddedJWK:
		return fail("missing jwk header")
	case t.Alg == "":
		return fail("missing alg")
	}
	if !Allowed(t.Alg) {
		// Covers "none" and every HMAC algorithm.
		return fail(fmt.Sprintf("alg %q not allowed", truncate(string(t.Alg), 16)))
	}
	return checkTyp(t.Typ, p)
}

// checkTyp compares typ case-insensitively, as media types are (RFC 7515
// §4.1.9).
func checkTyp(typ string, p *Profile) error {
	if p.mediaPrefix && len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	if strings.EqualFold(typ, p.Typ) {
		return nil
	}
	if p.RequireTyp {
		return fail("typ must be " + p.Typ)
	}
	if typ == "" || strings.EqualFold(typ, "JWT") {
		return nil
	}
	return fail(fmt.Sprintf("wrong typ %q", truncate(typ, 40)))
}

func decodeClaims(payload []byte, c *Claims) error {
	err := members(payload, func(name, raw []byte) error {
		var v any
		switch string(name) {
		case "iss":
			v = &c.Issuer
		case "sub":
			v = &c.Subject
		case "aud":
			return decodeAudience(raw, &c.Audience)
		case "iat":
			return decodeNumericDate(raw, &c.IssuedAt)
		case "exp":
			return decodeNumericDate(raw, &c.Expiry)
		case "nbf":
			return decodeNumericDate(raw, &c.NotBefore)
		case "jti":
			v = &c.ID
		case "htm":
			v = &c.HTM
		case "htu":
			v = &c.HTU
		case "aph":
			v = &c.APH
		case "ath":
			v = &c.ATH
		case "nonce":
			v = &c.Nonce
		case "task_id":
			v = &c.TaskID
		case "task_description_hash":
			v = &c.TaskDescriptionHash
		case "cnf":
			return decodeCnf(raw, &c.Cnf)
		case "events":
			c.Events = raw
			return nil
		case "sub_id":
			c.SubID = raw
			return nil
		case "txn":
			v = &c.Txn
		default:
			return nil
		}
		if sp, ok := v.(*string); ok {
			if jsonString(raw, sp) != nil {
				return errMalformed
			}
			return nil
		}
		if json.Unmarshal(raw, v) != nil {
			return errMalformed
		}
		return nil
	})
	switch {
	case errors.Is(err, errNotObject):
		return fail("claims are not a JSON object")
	case errors.Is(err, errDuplicate):
		return fail("duplicate claim")
	case err != nil:
		return fail("malformed claims")
	case len(c.ID) > MaxJTIBytes:
		return fail("jti too long")
	}
	return nil
}

var errMalformed = errors.New("malformed")

// jsonString decodes a JSON string. A plain one (no escape, no control
// character, valid UTF-8: every string our peers send) is taken as it is,
// without encoding/json's reflection; anything else goes through
// encoding/json, so both paths accept the same inputs and yield the same
// value (FuzzJSONString).
func jsonString(raw []byte, dst *string) error {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && plainString(raw[1:n-1]) {
		*dst = string(raw[1 : n-1])
		return nil
	}
	return json.Unmarshal(raw, dst)
}

// knownString returns the one of known that the JSON string raw holds
// when raw is that value's plain form, so that jsonString's copy is not
// made for values we already hold.
func knownString[S ~string](raw []byte, known []S) (S, bool) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' {
		for _, k := range known {
			if string(raw[1:n-1]) == string(k) && k != "" {
				return k, true
			}
		}
	}
	return "", false
}

// decodeAudience decodes aud as go-jose's jwt.Audience does (a string or
// an array of strings), without reflection when every string is plain;
// anything else goes through go-jose's decoder, so both paths accept the
// same inputs and yield the same value (FuzzClaimFastPaths).
func decodeAudience(raw []byte, dst *jwt.Audience) error {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && plainString(raw[1:n-1]) {
		*dst = jwt.Audience{string(raw[1 : n-1])}
		return nil
	}
	if aud, ok := plainStringArray(raw); ok {
		*dst = aud
		return nil
	}
	if json.Unmarshal(raw, dst) != nil {
		return errMalformed
	}
	return nil
}

// plainStringArray reads a non-empty JSON array of plain strings; ok is
// false for anything else.
func plainStringArray(raw []byte) (_ []string, ok bool) {
	i := jsonscan.SkipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return nil, false
	}
	var out []string
	for {
		i = jsonscan.SkipSpace(raw, i+1)
		if i >= len(raw) || raw[i] != '"' {
			return nil, false
		}
		end := bytes.IndexByte(raw[i+1:], '"')
		if end < 0 || !plainString(raw[i+1:i+1+end]) {
			return nil, false
		}
		out = append(out, string(raw[i+1:i+1+end]))
		i = jsonscan.SkipSpace(raw, i+1+end+1)
		switch {
		case i >= len(raw):
			return nil, false
		case raw[i] == ']':
			if jsonscan.SkipSpace(raw, i+1) != len(raw) {
				return nil, false
			}
			return out, true
		case raw[i] != ',':
			return nil, false
		}
	}
}

// decodeNumericDate decodes a NumericDate claim as encoding/json with
// go-jose's jwt.NumericDate does; a plain integer of up to 15 digits (every
// time our peers send) is read directly, anything else through
// encoding/json (FuzzClaimFastPaths).
func decodeNumericDate(raw []byte, dst **jwt.NumericDate) error {
	if n := len(raw); n >= 1 && n <= 15 && (raw[0] != '0' || n == 1) {
		var v int64
		for _, c := range raw {
			if c < '0' || c > '9' {
				goto slow
			}
			v = v*10 + int64(c-'0')
		}
		d := jwt.NumericDate(v)
		*dst = &d
		return nil
	}
slow:
	if json.Unmarshal(raw, dst) != nil {
		return errMalformed
	}
	return nil
}

func plainString(b []byte) bool {
	ascii := true
	for _, c := range b {
		switch {
		case c < 0x20, c == '"', c == '\\':
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return ascii || utf8.Valid(b)
}

// decodeCnf decodes the confirmation claim with the rules of the claims
// themselves: exact member names, no duplicates.
func decodeCnf(raw []byte, dst **Cnf) error {
	if bytes.Equal(raw, []byte("null")) {
		*dst = nil
		return nil
	}
	cnf := &Cnf{}
	err := members(raw, func(name, raw []byte) error {
		switch string(name) {
		case "jwk":
			cnf.JWK = raw
		case "jkt":
			if jsonString(raw, &cnf.JKT) != nil {
				return errMalformed
			}
		}
		return nil
	})
	if err != nil {
		return errMalformed
	}
	*dst = cnf
	return nil
}
