package dpop

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

// mustKey returns a fresh key or fails the test.
func mustKey(t testing.TB, alg string) *Key {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatalf("GenerateKey(%q): %v", alg, err)
	}
	return k
}

// HB-2: ephemeral keys, public JWK without private members, RFC 7638 thumbprints.
func TestGenerateKey(t *testing.T) {
	tests := []struct {
		alg, wantAlg, wantKty string
	}{
		{"", "ES256", "EC"},
		{"ES256", "ES256", "EC"},
		{"ES384", "ES384", "EC"},
		{"EdDSA", "EdDSA", "OKP"},
		{"PS256", "PS256", "RSA"},
	}
	for _, tt := range tests {
		t.Run(tt.wantAlg+"/"+tt.alg, func(t *testing.T) {
			k := mustKey(t, tt.alg)
			if got := k.Algorithm(); got != tt.wantAlg {
				t.Errorf("Algorithm() = %q, want %q", got, tt.wantAlg)
			}
			var m map[string]any
			if err := json.Unmarshal(k.PublicJSON(), &m); err != nil {
				t.Fatal(err)
			}
			for _, p := range privateJWKMembers {
				if _, ok := m[p]; ok {
					t.Errorf("public JWK has private member %q", p)
				}
			}
			if m["kty"] != tt.wantKty || m["alg"] != tt.wantAlg || m["kid"] != k.Thumbprint() {
				t.Errorf("public JWK = %v", m)
			}
			if k.KeyID() != k.Thumbprint() {
				t.Errorf("default kid %q != thumbprint %q", k.KeyID(), k.Thumbprint())
			}
			parsed, err := ParsePublicJWK(k.PublicJSON())
			if err != nil {
				t.Fatalf("ParsePublicJWK(own key): %v", err)
			}
			tp, err := Thumbprint(parsed)
			if err != nil || tp != k.Thumbprint() {
				t.Errorf("Thumbprint(parsed) = %q, %v; want %q", tp, err, k.Thumbprint())
			}
			if k.Signer() == nil {
				t.Error("Signer() is nil")
			}
		})
	}
	// HB-2: two tasks, two different keys.
	a, b := mustKey(t, ""), mustKey(t, "")
	if a.Thumbprint() == b.Thumbprint() {
		t.Error("two generated keys share a thumbprint")
	}
	if _, err := GenerateKey("HS256"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("GenerateKey(HS256) = %v, want ErrInvalidKey", err)
	}
}

// RFC 7638 §3.1 and RFC 8037 §A.3 test vectors.
func TestThumbprintVectors(t *testing.T) {
	tests := []struct {
		name, jwk, want string
	}{
		{
			name: "RFC 7638 RSA",
			jwk: `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
				"e":"AQAB","alg":"RS256","kid":"2011-04-29"}`,
			want: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
		},
		{
			name: "RFC 8037 Ed25519",
			jwk:  `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
			want: "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwk, err := ParsePublicJWK(json.RawMessage(tt.jwk))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Thumbprint(jwk)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Thumbprint = %q, want %q", got, tt.want)
			}
		})
	}
}

// G-21: keys compare by thumbprint, never by JSON text.
func TestSameKey(t *testing.T) {
	k := mustKey(t, "ES256")
	other := mustKey(t, "ES256")
	var m map[string]any
	if err := json.Unmarshal(k.PublicJSON(), &m); err != nil {
		t.Fatal(err)
	}
	reordered := json.RawMessage(`{ "y": "` + m["y"].(string) + `", "x": "` + m["x"].(string) +
		`", "crv": "P-256", "kty": "EC", "kid": "something-else" }`)
	priv := jose.JSONWebKey{Key: k.Signer()}
	privJSON, err := priv.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		a, b json.RawMessage
		want bool
	}{
		{"identical", k.PublicJSON(), k.PublicJSON(), true},
		{"reordered, other kid, whitespace", k.PublicJSON(), reordered, true},
		{"different keys", k.PublicJSON(), other.PublicJSON(), false},
		{"private JWK of the same key", k.PublicJSON(), privJSON, false},
		{"garbage", k.PublicJSON(), json.RawMessage(`{"kty":`), false},
		{"empty", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SameKey(tt.a, tt.b); got != tt.want {
				t.Errorf("SameKey = %v, want %v", got, tt.want)
			}
		})
	}
}

// G-6: cnf.jwk must be a public asymmetric key.
func TestParsePublicJWKRejects(t *testing.T) {
	ec := mustKey(t, "ES256")
	var m map[string]any
	_ = json.Unmarshal(ec.PublicJSON(), &m)
	with := func(k, v string) json.RawMessage {
		c := map[string]any{}
		for a, b := range m {
			c[a] = b
		}
		if v == "" {
			delete(c, k)
		} else {
			c[k] = v
		}
		b, _ := json.Marshal(c)
		return b
	}
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p521JSON, _ := (&jose.JSONWebKey{Key: p521.Public()}).MarshalJSON()
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa1024JSON, _ := (&jose.JSONWebKey{Key: rsa1024.Public()}).MarshalJSON()
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edJSON, _ := (&jose.JSONWebKey{Key: edPub, Algorithm: "ES256"}).MarshalJSON()
	tests := []struct {
		name string
		raw  json.RawMessage
	}{
		{"private member d", with("d", "AAAA")},
		{"symmetric key", json.RawMessage(`{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}`)},
		{"P-521 curve", p521JSON},
		{"RSA 1024", rsa1024JSON},
		{"use enc", with("use", "enc")},
		{"alg HS256", with("alg", "HS256")},
		{"alg none", with("alg", "none")},
		{"alg for another curve", with("alg", "ES384")},
		{"Ed25519 key with ES256 alg", edJSON},
		{"point not on curve", with("x", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")},
		{"missing x", with("x", "")},
		{"not an object", json.RawMessage(`"jwk"`)},
		{"null", json.RawMessage(`null`)},
		{"empty", nil},
		{"too large", json.RawMessage(`{"kty":"EC","pad":"` + strings.Repeat("a", maxJWKBytes) + `"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePublicJWK(tt.raw)
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ParsePublicJWK = %v, want ErrInvalidKey", err)
			}
			if !strings.HasPrefix(err.Error(), "dpop: ") {
				t.Errorf("error %q lacks the dpop: prefix", err)
			}
		})
	}
}

func TestNewKey(t *testing.T) {
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaPriv, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	tests := []struct {
		name    string
		key     *Key
		err     error
		wantAlg string
	}{}
	add := func(name string, wantAlg string, f func() (*Key, error)) {
		k, err := f()
		tests = append(tests, struct {
			name    string
			key     *Key
			err     error
			wantAlg string
		}{name, k, err, wantAlg})
	}
	add("ecdsa default", "ES256", func() (*Key, error) { return NewKey(ecPriv, "", "") })
	add("rsa default", "RS256", func() (*Key, error) { return NewKey(rsaPriv, "", "") })
	add("rsa PS256", "PS256", func() (*Key, error) { return NewKey(rsaPriv, "PS256", "k1") })
	add("ed25519", "EdDSA", func() (*Key, error) { return NewKey(edPriv, "", "") })
	add("P-256 with ES384", "", func() (*Key, error) { return NewKey(ecPriv, "ES384", "") })
	add("HS256", "", func() (*Key, error) { return NewKey(ecPriv, "HS256", "") })
	add("P-521", "", func() (*Key, error) { return NewKey(p521, "", "") })
	add("nil", "", func() (*Key, error) { return NewKey(nil, "", "") })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantAlg == "" {
				if !errors.Is(tt.err, ErrInvalidKey) {
					t.Fatalf("err = %v, want ErrInvalidKey", tt.err)
				}
				return
			}
			if tt.err != nil {
				t.Fatal(tt.err)
			}
			if got := tt.key.Algorithm(); got != tt.wantAlg {
				t.Errorf("Algorithm = %q, want %q", got, tt.wantAlg)
			}
		})
	}
	k, err := NewKey(rsaPriv, "PS256", "k1")
	if err != nil {
		t.Fatal(err)
	}
	if k.KeyID() != "k1" || k.Public().KeyID != "k1" {
		t.Errorf("kid = %q / %q, want k1", k.KeyID(), k.Public().KeyID)
	}
}

func TestSign(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			k := mustKey(t, alg)
			tok, err := signJWT(k, "example+jwt", map[string]any{"iss": "https://a.example", "n": 1})
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSignedCompact(tok, algorithms)
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Header
			if h.KeyID != k.KeyID() || h.ExtraHeaders["typ"] != "example+jwt" || h.Algorithm != alg {
				t.Errorf("header = %+v", h)
			}
			pub := k.Public()
			payload, err := jws.Verify(&pub)
			if err != nil {
				t.Fatal(err)
			}
			// Every token we send carries a jti, added when claims lack one.
			var got map[string]any
			if err := json.Unmarshal(payload, &got); err != nil {
				t.Fatal(err)
			}
			jti, _ := got["jti"].(string)
			if len(jti) < 22 {
				t.Errorf("jti %q shorter than 128 bits", jti)
			}
			want := map[string]any{"iss": "https://a.example", "n": float64(1), "jti": jti}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("payload (-want +got):\n%s", diff)
			}
		})
	}
	// A jti the caller chose is kept; no typ means "JWT".
	tok, err := signJWT(mustKey(t, ""), "", map[string]any{"jti": "mine"})
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(tok, algorithms)
	if err != nil {
		t.Fatal(err)
	}
	if typ := jws.Signatures[0].Header.ExtraHeaders["typ"]; typ != "JWT" {
		t.Errorf("typ = %v, want JWT", typ)
	}
	if p := string(jws.UnsafePayloadWithoutVerification()); p != `{"jti":"mine"}` {
		t.Errorf("payload = %s", p)
	}
	k := mustKey(t, "")
	if _, err := signJWT(k, "", []string{"not", "an", "object"}); err == nil {
		t.Error("signJWT accepted claims that are not an object")
	}
	if _, err := signJWT(nil, "", map[string]any{}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("signJWT(nil) = %v, want ErrInvalidKey", err)
	}
}

// TestParsePublicJWKMemo (#19 item 2): a key parsed before is answered
// from the memo (before: 56 allocations per parse of an ES256 key), each
// caller gets its own JSONWebKey, refused keys stay refused, and the memo
// stays within its bounds however many keys arrive.
func TestParsePublicJWKMemo(t *testing.T) {
	raw := mustKey(t, "ES256").PublicJSON()
	first, err := ParsePublicJWK(raw)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		k, err := ParsePublicJWK(raw)
		if err != nil || k == first {
			t.Fatal(k, err)
		}
	}); n > 12 {
		// The caller's deep copy (the EC point re-encoded and parsed);
		// the parse it replaces took 56.
		t.Errorf("ParsePublicJWK of a known key: %v allocations, want at most 12", n)
	}
	again, _ := ParsePublicJWK(raw)
	again.KeyID = "changed"
	if k, _ := ParsePublicJWK(raw); k.KeyID == "changed" || !cmp.Equal(first.Key, k.Key) {
		t.Errorf("a caller's change reached the memo: %+v", k)
	}
	if again.Key == first.Key {
		t.Error("two callers got the same *ecdsa.PublicKey")
	}
	// Key material wiped in place by one caller stays whole for the next.
	edRaw := mustKey(t, "EdDSA").PublicJSON()
	ed, err := ParsePublicJWK(edRaw)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(ed.Key.(ed25519.PublicKey))
	clear(ed.Key.(ed25519.PublicKey))
	if k, _ := ParsePublicJWK(edRaw); !bytes.Equal(k.Key.(ed25519.PublicKey), want) {
		t.Error("a caller's wipe of its Ed25519 key reached the memo")
	}
	bad := []byte(`{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}`)
	for range 2 {
		if _, err := ParsePublicJWK(bad); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("private JWK: %v", err)
		}
	}
	for range maxMemoJWKs + 10 {
		if _, err := ParsePublicJWK(mustKey(t, "EdDSA").PublicJSON()); err != nil {
			t.Fatal(err)
		}
		publicJWKs.mu.Lock()
		n, b := len(publicJWKs.m), publicJWKs.bytes
		publicJWKs.mu.Unlock()
		if n > maxMemoJWKs || b > maxMemoJWKBytes {
			t.Fatalf("memo holds %d keys, %d bytes", n, b)
		}
	}
}

// TestMemoThumbprint: the thumbprint kept with a memoised key is the one
// Thumbprint computes, and asking again costs nothing.
func TestMemoThumbprint(t *testing.T) {
	k := mustKey(t, "ES256")
	m, err := memoPublicJWK(k.PublicJSON())
	if err != nil {
		t.Fatal(err)
	}
	want, err := Thumbprint(m.key)
	if err != nil || want != k.Thumbprint() {
		t.Fatalf("Thumbprint %q, %v; key's %q", want, err, k.Thumbprint())
	}
	if got, err := m.thumbprint(); got != want || err != nil {
		t.Errorf("memo thumbprint %q, %v; want %q", got, err, want)
	}
	if n := testing.AllocsPerRun(100, func() {
		m2, err := memoPublicJWK(k.PublicJSON())
		if err != nil || m2 != m {
			t.Fatal(m2, err)
		}
		_, _ = m2.thumbprint()
	}); n > 1 {
		t.Errorf("a known key and its thumbprint: %v allocations, want at most 1 (PublicJSON's)", n)
	}
}
