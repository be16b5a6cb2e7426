package jwtcheck_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	var e *jwtcheck.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want a *jwtcheck.Error with reason %q", err, reason)
	}
	if !strings.Contains(e.Reason, reason) {
		t.Fatalf("reason = %q, want it to contain %q", e.Reason, reason)
	}
}

// A well-formed token of every kind parses and verifies; this is the
// control for every rejection below.
func TestParseEveryKind(t *testing.T) {
	k := newTestKey(t)
	for _, p := range profiles {
		t.Run(p.Name, func(t *testing.T) {
			tok, err := jwtcheck.Parse(k.token(t, p, nil, nil), p)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.Verify(k.verifyKey(p)); err != nil {
				t.Fatal(err)
			}
			if err := jwtcheck.CheckTimes(tok, t0, jwtcheck.TimeRules{Skew: time.Minute, MaxLifetime: 5 * time.Minute}); err != nil {
				t.Fatal(err)
			}
			if tok.Claims.ID != "jti-1" || tok.Claims.Issuer != "https://a.example" || tok.Alg != jose.ES256 {
				t.Errorf("token = %+v", tok)
			}
		})
	}
}

// G-6: every kind refuses headers that would pick the key or change what
// is signed, even with a valid signature; jwk is refused everywhere
// except in DPoP proofs, which must carry it.
func TestForbiddenHeaders(t *testing.T) {
	k := newTestKey(t)
	for _, p := range profiles {
		for _, name := range []string{"jku", "x5u", "x5c", "crit", "b64", "enc", "zip", "jwk"} {
			if name == "jwk" && p.EmbeddedJWK {
				continue
			}
			t.Run(p.Name+"/"+name, func(t *testing.T) {
				var v any = "https://evil.example/x"
				switch name {
				case "x5c", "crit":
					v = []string{"exp"}
				case "b64":
					v = false
				case "jwk":
					v = map[string]any{"kty": "EC"}
				}
				_, err := jwtcheck.Parse(k.token(t, p, map[string]any{name: v}, nil), p)
				wantReason(t, err, "forbidden header "+name)
			})
		}
	}
	t.Run("DPoP without jwk", func(t *testing.T) {
		_, err := jwtcheck.Parse(k.token(t, jwtcheck.DPoP, map[string]any{"jwk": nil}, nil), jwtcheck.DPoP)
		wantReason(t, err, "missing jwk")
	})
}

// One token, one encoding: padding, non-canonical base64, whitespace,
// JWE and JSON serialisations are refused before anything else.
func TestParseEncoding(t *testing.T) {
	k := newTestKey(t)
	p := jwtcheck.HarnessProof
	good := k.token(t, p, nil, nil)
	parts := strings.Split(good, ".")
	// Flip the unused low bits of the last signature character: the same
	// bytes under a non-canonical encoding.
	last := parts[2][len(parts[2])-1]
	alias := string(rune(last + 1))
	if strings.IndexByte("AQgw", last) < 0 { // 64 bytes = 86 chars: 2 spare bits
		alias = string(rune(last))
	}
	tests := []struct{ name, token, reason string }{
		{"empty", "", "empty token"},
		{"too large", strings.Repeat("a", p.MaxBytes+1), "too large"},
		{"two parts", parts[0] + "." + parts[1], "not a compact JWS"},
		{"JWE", good + ".x.y", "not a compact JWS"},
		{"JSON serialisation", `{"payload":"` + parts[1] + `"}`, "not a compact JWS"},
		{"padding", parts[0] + "=." + parts[1] + "." + parts[2], "malformed encoding"},
		{"newline", parts[0] + "\n." + parts[1] + "." + parts[2], "malformed encoding"},
		{"standard alphabet", strings.ReplaceAll(parts[0], "e", "+") + "." + parts[1] + "." + parts[2], "malformed encoding"},
		{"non-canonical signature", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + alias, "malformed signature encoding"},
		{"header not JSON", b64([]byte("nope")) + "." + parts[1] + "." + parts[2], "header is not a JSON object"},
		{"header null", b64([]byte("null")) + "." + parts[1] + "." + parts[2], "header is not a JSON object"},
		{"claims not an object", k.signRaw(t, mustJSON(t, k.header(t, p, nil)), []byte(`["x"]`)), "claims are not a JSON object"},
		{"claims malformed", k.signRaw(t, mustJSON(t, k.header(t, p, nil)), []byte(`{"iat":"x"}`)), "malformed claims"},
		{"jti too long", k.token(t, p, nil, map[string]any{"jti": strings.Repeat("j", jwtcheck.MaxJTIBytes+1)}), "jti too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "non-canonical signature" && alias == string(rune(last)) {
				t.Skip("last character has no spare bits")
			}
			_, err := jwtcheck.Parse(tt.token, p)
			wantReason(t, err, tt.reason)
		})
	}
}

// G-6: the allow-list is asymmetric only.
func TestParseAlgorithms(t *testing.T) {
	k := newTestKey(t)
	p := jwtcheck.Assertion
	for _, alg := range []string{"none", "HS256", "HS512", "ES512", "RS384", "", "es256"} {
		t.Run(alg, func(t *testing.T) {
			_, err := jwtcheck.Parse(k.token(t, p, map[string]any{"alg": alg}, nil), p)
			if alg == "" {
				wantReason(t, err, "missing alg")
				return
			}
			wantReason(t, err, "not allowed")
		})
	}
}

// G-8: a kind accepts its own typ (case-insensitively), a missing typ or
// "JWT" from plain v0.1 peers unless it requires typ, and never another
// kind's typ.
func TestTyp(t *testing.T) {
	k := newTestKey(t)
	for _, p := range profiles {
		for _, other := range profiles {
			t.Run(p.Name+"/"+other.Typ, func(t *testing.T) {
				_, err := jwtcheck.Parse(k.token(t, p, map[string]any{"typ": other.Typ}, nil), p)
				if other == p {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if err == nil {
					t.Fatal("another kind's typ accepted")
				}
			})
		}
		t.Run(p.Name+"/legacy", func(t *testing.T) {
			for _, typ := range []any{nil, "JWT", "jwt", strings.ToUpper(p.Typ)} {
				_, err := jwtcheck.Parse(k.token(t, p, map[string]any{"typ": typ}, nil), p)
				legacy := typ == nil || strings.EqualFold(typ.(string), "JWT")
				switch {
				case legacy && p.RequireTyp:
					wantReason(t, err, "typ must be")
				case err != nil:
					t.Errorf("typ %v refused: %v", typ, err)
				}
			}
			_, err := jwtcheck.Parse(k.token(t, p, map[string]any{"typ": 7}, nil), p)
			wantReason(t, err, "malformed header")
		})
	}
}

// G-7 for every kind: iat, exp, nbf, skew and lifetime; a future nbf
// beyond the skew is refused by every kind; a security event token must
// not carry exp.
func TestCheckTimes(t *testing.T) {
	k := newTestKey(t)
	rules := jwtcheck.TimeRules{Skew: time.Minute, MaxLifetime: 5 * time.Minute}
	type row struct {
		name    string
		changes map[string]any
		now     time.Time
		rules   *jwtcheck.TimeRules
		reason  string // "" accepts
	}
	for _, p := range profiles {
		rows := []row{
			{name: "valid"},
			{name: "nbf beyond skew", changes: map[string]any{"nbf": t0.Add(61 * time.Second).Unix()}, reason: "nbf"},
			{name: "nbf within skew", changes: map[string]any{"nbf": t0.Add(59 * time.Second).Unix()}},
			{name: "missing iat", changes: map[string]any{"iat": nil}, reason: "missing iat"},
			{name: "iat beyond skew", changes: map[string]any{"iat": t0.Add(61 * time.Second).Unix()}, reason: "iat in the future"},
		}
		switch p.Exp {
		case jwtcheck.ExpRequired:
			rows = append(rows,
				row{name: "missing exp", changes: map[string]any{"exp": nil}, reason: "missing exp"},
				row{name: "expired", now: t0.Add(2 * time.Minute), reason: "expired"},
				row{name: "exp not after iat", changes: map[string]any{"exp": t0.Unix()}, reason: "exp not after iat"},
				row{name: "too long", changes: map[string]any{"exp": t0.Add(6 * time.Minute).Unix()}, reason: "lifetime exceeds"},
			)
		case jwtcheck.ExpForbidden:
			rows = append(rows, row{name: "exp present", changes: map[string]any{"exp": t0.Add(time.Minute).Unix()}, reason: "exp not allowed"})
		case jwtcheck.ExpOptional:
			age := jwtcheck.TimeRules{Skew: time.Minute, MaxAge: 5 * time.Minute}
			rows = append(rows,
				row{name: "no exp", changes: map[string]any{"exp": nil}, rules: &age},
				row{name: "too old", changes: map[string]any{"exp": nil}, now: t0.Add(6 * time.Minute), rules: &age, reason: "too old"},
				row{name: "expired", now: t0.Add(2 * time.Minute), rules: &age, reason: "expired"},
			)
		}
		for _, r := range rows {
			t.Run(p.Name+"/"+r.name, func(t *testing.T) {
				tok, err := jwtcheck.Parse(k.token(t, p, nil, r.changes), p)
				if err != nil {
					t.Fatal(err)
				}
				now, rl := r.now, rules
				if now.IsZero() {
					now = t0
				}
				if r.rules != nil {
					rl = *r.rules
				}
				err = jwtcheck.CheckTimes(tok, now, rl)
				if r.reason == "" {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				wantReason(t, err, r.reason)
			})
		}
	}
}

// G-6: the key must exist, be public, be a signing key, and fit the
// algorithm (curve, size, type); the key's own alg must agree.
func TestCheckKey(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	// KeyFits looks at the modulus size and exponent only: odd moduli of
	// the given size stand in for real keys.
	rsaPub := func(bits, e int) *rsa.PublicKey {
		n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
		return &rsa.PublicKey{N: n.SetBit(n, 0, 1), E: e}
	}
	tests := []struct {
		name   string
		key    *jose.JSONWebKey
		alg    jose.SignatureAlgorithm
		reason string
	}{
		{"P-256 ES256", &jose.JSONWebKey{Key: &p256.PublicKey}, jose.ES256, ""},
		{"P-384 ES384", &jose.JSONWebKey{Key: &p384.PublicKey}, jose.ES384, ""},
		{"Ed25519", &jose.JSONWebKey{Key: edPub}, jose.EdDSA, ""},
		{"nil key", nil, jose.ES256, "no key"},
		{"nil key material", &jose.JSONWebKey{}, jose.ES256, "no key"},
		{"P-384 with ES256", &jose.JSONWebKey{Key: &p384.PublicKey}, jose.ES256, "does not fit"},
		{"P-256 with ES384", &jose.JSONWebKey{Key: &p256.PublicKey}, jose.ES384, "does not fit"},
		{"P-521", &jose.JSONWebKey{Key: &p521.PublicKey}, jose.ES256, "does not fit"},
		{"Ed25519 with ES256", &jose.JSONWebKey{Key: edPub}, jose.ES256, "does not fit"},
		{"RSA 1024", &jose.JSONWebKey{Key: &rsa1024.PublicKey}, jose.RS256, "does not fit"},
		{"RSA 2048", &jose.JSONWebKey{Key: rsaPub(2048, 65537)}, jose.RS256, ""},
		{"RSA 4096", &jose.JSONWebKey{Key: rsaPub(4096, 65537)}, jose.PS256, ""},
		// Review Info 2: an attacker-chosen DPoP key must not make
		// verification expensive.
		{"RSA 4097", &jose.JSONWebKey{Key: rsaPub(4097, 65537)}, jose.RS256, "does not fit"},
		{"RSA 8192", &jose.JSONWebKey{Key: rsaPub(8192, 65537)}, jose.RS256, "does not fit"},
		{"RSA exponent 2^31-1", &jose.JSONWebKey{Key: rsaPub(4096, 1<<31-1)}, jose.RS256, "does not fit"},
		{"RSA exponent 3", &jose.JSONWebKey{Key: rsaPub(2048, 3)}, jose.RS256, "does not fit"},
		{"HMAC secret", &jose.JSONWebKey{Key: []byte("secret")}, jose.ES256, "does not fit"},
		{"private key", &jose.JSONWebKey{Key: p256}, jose.ES256, "does not fit"},
		{"HS256", &jose.JSONWebKey{Key: []byte("secret")}, jose.HS256, "not allowed"},
		{"encryption key", &jose.JSONWebKey{Key: &p256.PublicKey, Use: "enc"}, jose.ES256, "not a signing key"},
		{"key alg differs", &jose.JSONWebKey{Key: &rsa1024.PublicKey, Algorithm: "PS256"}, jose.RS256, "does not fit"},
		{"key alg differs, fitting key", &jose.JSONWebKey{Key: &p256.PublicKey, Algorithm: "ES384"}, jose.ES256, "alg differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := jwtcheck.CheckKey(tt.key, tt.alg)
			if tt.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantReason(t, err, tt.reason)
		})
	}
}

// A signature by another key, or over other bytes, fails; a token whose
// verification failed cannot be recorded.
func TestVerifySignature(t *testing.T) {
	k, other := newTestKey(t), newTestKey(t)
	p := jwtcheck.HarnessProof
	good := k.token(t, p, nil, nil)
	tok, err := jwtcheck.Parse(good, p)
	if err != nil {
		t.Fatal(err)
	}
	wantReason(t, tok.Verify(&other.jwk), "bad signature")
	if tok.Verified() {
		t.Fatal("token marked verified after a bad signature")
	}
	parts := strings.Split(good, ".")
	swapped := parts[0] + "." + b64(mustJSON(t, claims(p, map[string]any{"iss": "https://evil.example"}))) + "." + parts[2]
	tok2, err := jwtcheck.Parse(swapped, p)
	if err != nil {
		t.Fatal(err)
	}
	wantReason(t, tok2.Verify(&k.jwk), "bad signature")
	short, _ := jwtcheck.Parse(parts[0]+"."+parts[1]+"."+b64([]byte("short")), p)
	wantReason(t, short.Verify(&k.jwk), "bad signature")
}

type memReplay struct {
	seen map[string]bool
	err  error
}

func (m *memReplay) Seen(_ context.Context, iss, jti string, _ time.Time) (bool, error) {
	if m.err != nil {
		return false, m.err
	}
	key := iss + "\x00" + jti
	was := m.seen[key]
	m.seen[key] = true
	return was, nil
}

// The replay step is last: an unverified token is never recorded, a
// verified one once, and a cache failure is not an invalid token.
func TestRecord(t *testing.T) {
	k, other := newTestKey(t), newTestKey(t)
	p := jwtcheck.HarnessProof
	cache := &memReplay{seen: map[string]bool{}}
	ctx := context.Background()
	tok, _ := jwtcheck.Parse(k.token(t, p, nil, nil), p)
	wantReason(t, tok.Record(ctx, cache, "iss", t0), "before the signature check")
	_ = tok.Verify(&other.jwk)
	wantReason(t, tok.Record(ctx, cache, "iss", t0), "before the signature check")
	if len(cache.seen) != 0 {
		t.Fatalf("cache holds %d entries for an unverified token", len(cache.seen))
	}
	if err := tok.Verify(&k.jwk); err != nil {
		t.Fatal(err)
	}
	if err := tok.Record(ctx, cache, "iss", t0); err != nil {
		t.Fatal(err)
	}
	err := tok.Record(ctx, cache, "iss", t0)
	wantReason(t, err, "jti replayed")
	if !errors.Is(err, jwtcheck.ErrReplay) {
		t.Errorf("err = %v, want ErrReplay", err)
	}
	down := errors.New("down")
	err = tok.Record(ctx, &memReplay{err: down}, "iss", t0)
	var e *jwtcheck.Error
	if !errors.Is(err, down) || errors.As(err, &e) {
		t.Errorf("cache failure: err = %v, want the cause and no *Error", err)
	}
	noJTI, _ := jwtcheck.Parse(k.token(t, p, nil, map[string]any{"jti": nil}), p)
	_ = noJTI.Verify(&k.jwk)
	wantReason(t, noJTI.Record(ctx, cache, "iss", t0), "missing jti")
}

// Every token we send has typ and jti; kid unless the key is embedded.
func TestSign(t *testing.T) {
	k := newTestKey(t)
	s := jwtcheck.Signer{Key: opaque(k), Alg: jose.ES256, KeyID: "k1"}
	for _, p := range profiles {
		t.Run(p.Name, func(t *testing.T) {
			raw, err := jwtcheck.Sign(s, p.Typ, p.EmbeddedJWK, map[string]any{"iss": "x", "iat": t0.Unix()})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwtcheck.Parse(raw, p)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.Verify(k.verifyKey(p)); err != nil {
				t.Fatal(err)
			}
			if tok.Typ != p.Typ || len(tok.Claims.ID) < 22 || (tok.Kid == "") != p.EmbeddedJWK {
				t.Errorf("typ %q, jti %q, kid %q", tok.Typ, tok.Claims.ID, tok.Kid)
			}
		})
	}
	for name, claims := range map[string]any{"empty object": struct{}{}, "empty jti": map[string]any{"jti": ""}, "null jti": map[string]any{"jti": nil}} {
		raw, err := jwtcheck.Sign(s, "JWT", false, claims)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwtcheck.Parse(raw, jwtcheck.Assertion)
		if err != nil || len(tok.Claims.ID) < 22 {
			t.Errorf("%s: %v, jti %q", name, err, tok.Claims.ID)
		}
	}
	if _, err := jwtcheck.Sign(s, "", false, map[string]any{}); err == nil {
		t.Error("empty typ accepted")
	}
	if _, err := jwtcheck.Sign(s, "JWT", false, []int{1}); err == nil {
		t.Error("claims that are not an object accepted")
	}
	if _, err := jwtcheck.Sign(jwtcheck.Signer{Alg: jose.ES256}, "JWT", false, map[string]any{}); err == nil {
		t.Error("nil key accepted")
	}
}

// Parse counts its runs per profile, for the parse-once tests of callers.
func TestParses(t *testing.T) {
	k := newTestKey(t)
	p := jwtcheck.SecurityEvent
	before := p.Parses()
	raw := k.token(t, p, nil, nil)
	_, _ = jwtcheck.Parse(raw, p)
	_, _ = jwtcheck.Parse("garbage", p)
	if n := p.Parses() - before; n != 2 {
		t.Errorf("Parses grew by %d, want 2", n)
	}
}

// BenchmarkParse is the cost of one Parse, the step every token pays
// before its signature is checked.
func BenchmarkParse(b *testing.B) {
	k := newTestKey(b)
	for _, p := range []*jwtcheck.Profile{jwtcheck.DPoP, jwtcheck.Assertion} {
		raw := k.token(b, p, nil, map[string]any{"htm": "POST", "htu": "https://b.example/x", "ath": "abc"})
		b.Run(p.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jwtcheck.Parse(raw, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMemberNamesExactAndUnique (review Info 1): header and claim names are
// matched exactly, as JOSE requires, and a name given twice is refused,
// so no reader can see another token than ours (encoding/json matched
// "ALG" to alg and let the last duplicate win).
func TestMemberNamesExactAndUnique(t *testing.T) {
	k := newTestKey(t)
	p := jwtcheck.Assertion
	goodClaims := mustJSON(t, claims(p, nil))
	refused := []struct {
		name, header, claims, reason string
	}{
		{"upper-case header names", `{"ALG":"ES256","KID":"k1","TYP":"` + p.Typ + `"}`, "", "missing alg"},
		{"alg twice", `{"alg":"ES256","kid":"k1","typ":"` + p.Typ + `","alg":"ES384"}`, "", "duplicate header member"},
		{"alg twice, escaped", `{"alg":"ES256","kid":"k1","typ":"` + p.Typ + `","\u0061lg":"none"}`, "", "duplicate header member"},
		{"upper-case forbidden header", `{"alg":"ES256","kid":"k1","typ":"` + p.Typ + `","JKU":"https://evil.example/k"}`, "", "forbidden header jku"},
		{"jti twice", "", `{"iss":"https://a.example","aud":"https://b.example","iat":1772366400,"exp":1772366460,"jti":"a","jti":"b"}`, "duplicate claim"},
		// Invalid UTF-8 reads as U+FFFD to encoding/json and go-jose: two
		// such names, or one and an escaped U+FFFD, are one name twice
		// (review 6, Low 1: found by FuzzParseAgainstGoJose).
		{"two names of invalid UTF-8", `{"alg":"ES256","kid":"k1","typ":"` + p.Typ + "\",\"\x80\":1,\"\x81\":2}", "", "duplicate header member"},
		{"invalid UTF-8 and an escaped U+FFFD", "", "{\"iss\":\"https://a.example\",\"jti\":\"a\",\"\xff\":1,\"\\ufffd\":2}", "duplicate claim"},
		{"cnf member twice", "", `{"iss":"https://a.example","jti":"a","cnf":{"jkt":"a","jkt":"b"}}`, "malformed claims"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			h, c := []byte(tt.header), []byte(tt.claims)
			if tt.header == "" {
				h = mustJSON(t, k.header(t, p, nil))
			}
			if tt.claims == "" {
				c = goodClaims
			}
			_, err := jwtcheck.Parse(k.signRaw(t, h, c), p)
			wantReason(t, err, tt.reason)
		})
	}

	// Names in another case are other members: they neither set nor
	// override ours.
	c := `{"iss":"https://a.example","ISS":"https://evil.example","aud":"https://b.example","iat":1772366400,` +
		`"exp":1772366460,"jti":"a","JTI":"b","cnf":{"jkt":"t","JKT":"u"}}`
	tok, err := jwtcheck.Parse(k.signRaw(t, mustJSON(t, k.header(t, p, nil)), []byte(c)), p)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Claims; got.Issuer != "https://a.example" || got.ID != "a" || got.Cnf == nil || got.Cnf.JKT != "t" {
		t.Errorf("claims = iss %q, jti %q, cnf %+v; want the lower-case members", got.Issuer, got.ID, got.Cnf)
	}
	tok, err = jwtcheck.Parse(k.signRaw(t, mustJSON(t, k.header(t, p, nil)), []byte(`{"ISS":"x","JTI":"y"}`)), p)
	if err == nil && (tok.Claims.Issuer != "" || tok.Claims.ID != "") {
		t.Errorf("upper-case claims were read: iss %q, jti %q", tok.Claims.Issuer, tok.Claims.ID)
	}
}

// A security event token's typ is compared case-insensitively and may carry
// the application/ prefix (RFC 7515 §4.1.9, RFC 8417 §2.3); no other kind
// takes the prefix, and each kind refuses the others' typ (V7).
func TestSecurityEventTyp(t *testing.T) {
	k := newTestKey(t)
	p := jwtcheck.SecurityEvent
	for _, typ := range []string{"secevent+jwt", "SecEvent+JWT", "application/secevent+jwt", "Application/SECEVENT+jwt"} {
		if _, err := jwtcheck.Parse(k.token(t, p, map[string]any{"typ": typ}, nil), p); err != nil {
			t.Errorf("typ %q refused: %v", typ, err)
		}
	}
	for _, typ := range []string{"", "JWT", "application/", "application/jwt", "text/secevent+jwt", "application/application/secevent+jwt", jwtcheck.TypeAssertion} {
		_, err := jwtcheck.Parse(k.token(t, p, map[string]any{"typ": typ}, nil), p)
		wantReason(t, err, "typ")
	}
	for _, other := range profiles {
		if other == p {
			continue
		}
		for _, typ := range []string{"secevent+jwt", "application/secevent+jwt", "application/" + other.Typ} {
			_, err := jwtcheck.Parse(k.token(t, other, map[string]any{"typ": typ}, nil), other)
			wantReason(t, err, "typ")
		}
		if _, err := jwtcheck.Parse(k.token(t, other, nil, nil), p); err == nil {
			t.Errorf("a %s parsed as a security event token", other.Name)
		}
	}
}

// txn and sub_id, the claims a security event token adds, are decoded with
// the same exact-name rules as the others.
func TestSecurityEventClaims(t *testing.T) {
	k := newTestKey(t)
	p := jwtcheck.SecurityEvent
	tok, err := jwtcheck.Parse(k.token(t, p, nil, map[string]any{"txn": "msn_1:4", "sub_id": map[string]any{"format": "opaque", "id": "authz_1"}}), p)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Claims.Txn != "msn_1:4" || string(tok.Claims.SubID) != `{"format":"opaque","id":"authz_1"}` {
		t.Errorf("txn %q sub_id %s", tok.Claims.Txn, tok.Claims.SubID)
	}
	_, err = jwtcheck.Parse(k.token(t, p, nil, map[string]any{"txn": 7}), p)
	wantReason(t, err, "malformed claims")
}

// TestParseAllocs (#19): parsing an assertion takes no reflection for its
// plain claims: the token, one buffer for its signed input and three
// parts, and one allocation per string, aud and time read.
func TestParseAllocs(t *testing.T) {
	k := newTestKey(t)
	raw := k.token(t, jwtcheck.Assertion, nil, nil)
	n := testing.AllocsPerRun(100, func() {
		if _, err := jwtcheck.Parse(raw, jwtcheck.Assertion); err != nil {
			t.Fatal(err)
		}
	})
	slack := 0.0
	if jwtcheck.RaceEnabled {
		slack = 2 // pooled buffers dropped at random
	}
	if n > 10+slack {
		t.Errorf("Parse of an assertion: %v allocations, want at most 10 (34 before #19, 12 before #19 item 2)", n)
	}
	// Verify hashes the signed input Parse kept: nothing of its own but
	// what ECDSA allocates (the alg and typ are not copied either).
	tok, err := jwtcheck.Parse(raw, jwtcheck.Assertion)
	if err != nil {
		t.Fatal(err)
	}
	key := k.verifyKey(jwtcheck.Assertion)
	withVerify := testing.AllocsPerRun(100, func() {
		tok, err := jwtcheck.Parse(raw, jwtcheck.Assertion)
		if err != nil || tok.Verify(key) != nil {
			t.Fatal(err)
		}
	})
	if tok.Alg != "ES256" || tok.Typ != jwtcheck.Assertion.Typ {
		t.Errorf("alg %q typ %q", tok.Alg, tok.Typ)
	}
	if withVerify-n > 11+slack {
		t.Errorf("Verify: %v allocations, want at most 11 (12 before #19 item 2)", withVerify-n)
	}
}
