package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

// jwksFinder serves keys from a key set's published JWKS, as the discovery
// client would after fetching jwks_uri.
type jwksFinder struct {
	url  string
	keys *dpop.KeySet
}

func (f jwksFinder) LookupKey(_ context.Context, url, kid string) (*jose.JSONWebKey, error) {
	if url != f.url {
		return nil, errors.New("unknown JWKS URL")
	}
	k, ok := f.keys.PublicKey(kid)
	if !ok {
		return nil, errors.New("unknown kid")
	}
	return &k, nil
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	jwksURL = "https://svc.example.com/jwks.json"
	svc     = "https://svc.example.com"
	auth    = "https://ap.example.com"
)

// verifyAs verifies token as a party named aud does: one parse, then the
// verification with the issuer's keys from keys.
func verifyAs(t testing.TB, keys KeyFinder, aud, token, iss string) (*Claims, error) {
	t.Helper()
	now := func() time.Time { return t0 }
	v, err := NewVerifier(Config{Keys: keys, Audience: aud, Replay: dpop.NewMemoryReplayCache(dpop.WithLimit(100), dpop.WithClock(now)), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(token)
	if err != nil {
		return nil, err
	}
	return v.Verify(context.Background(), tok, jwksURL, iss)
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestVerify covers S-RED-2, S-AUTHZ-2, A-VAL-1..3, A-SCOPE-1..3, S-SCOPE-2..3
// and the G-6/G-7 hardening: one row per rejection.
func TestVerify(t *testing.T) {
	ks, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := dpop.GenerateKey("")
	v := jwksFinder{jwksURL, ks}
	good, err := Sign(ks.Current(), svc, auth, 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := verifyAs(t, v, auth, good, svc)
	if err != nil {
		t.Fatalf("valid assertion rejected: %v", err)
	}
	if c.Issuer != svc || c.Audience != auth || c.JTI == "" || c.Expiry.Sub(c.IssuedAt) != DefaultTTL {
		t.Errorf("claims %+v", c)
	}
	if tok, err := Parse(good); err != nil || tok.Issuer() != svc {
		t.Errorf("Parse = %v, %v", tok, err)
	}

	signWith := func(k *dpop.Key, claims map[string]any) string {
		s, err := jwtcheck.SignKey(k, Type, claims)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	claims := func(mod func(map[string]any)) map[string]any {
		m := map[string]any{"iss": svc, "aud": auth, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix(), "jti": "j"}
		if mod != nil {
			mod(m)
		}
		return m
	}
	// A foreign key with our kid: signature must fail.
	impostor, _ := dpop.NewKey(other.Signer(), "", ks.Current().KeyID())
	pubBytes, _ := json.Marshal(ks.Current().Public())
	hsHeader := b64(map[string]any{"alg": "HS256", "kid": ks.Current().KeyID()})
	hsBody := b64(claims(nil))
	mac := hmac.New(sha256.New, pubBytes)
	mac.Write([]byte(hsHeader + "." + hsBody))
	hs256 := hsHeader + "." + hsBody + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	none := b64(map[string]any{"alg": "none", "kid": ks.Current().KeyID()}) + "." + hsBody + "."
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64(claims(func(m map[string]any) { m["iss"] = "https://evil.example.com" })) + "." + parts[2]

	cases := []struct {
		name, token, iss, aud string
	}{
		{"wrong key", signWith(impostor, claims(nil)), svc, auth},
		{"wrong issuer expected", good, "https://other.example.com", auth},
		{"wrong audience", good, svc, "https://other-ap.example.com"},
		{"expired", signWith(ks.Current(), claims(func(m map[string]any) {
			m["iat"] = t0.Add(-10 * time.Minute).Unix()
			m["exp"] = t0.Add(-5 * time.Minute).Unix()
		})), svc, auth},
		{"issued in the future", signWith(ks.Current(), claims(func(m map[string]any) {
			m["iat"] = t0.Add(5 * time.Minute).Unix()
			m["exp"] = t0.Add(6 * time.Minute).Unix()
		})), svc, auth},
		{"lifetime too long", signWith(ks.Current(), claims(func(m map[string]any) { m["exp"] = t0.Add(time.Hour).Unix() })), svc, auth},
		{"no exp", signWith(ks.Current(), claims(func(m map[string]any) { delete(m, "exp") })), svc, auth},
		{"aud array of two", signWith(ks.Current(), claims(func(m map[string]any) { m["aud"] = []string{auth, svc} })), svc, auth},
		{"alg none", none, svc, auth},
		{"HS256 with the public key bytes", hs256, svc, auth},
		{"tampered payload", tampered, "https://evil.example.com", auth},
		{"unknown kid", signWith(other, claims(nil)), svc, auth},
		{"garbage", "not.a.jwt", svc, auth},
		{"empty", "", svc, auth},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := verifyAs(t, v, c.aud, c.token, c.iss); !errors.Is(err, ErrInvalid) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
		})
	}

	// Embedded jwk and jku headers are refused even when the signature is good.
	for _, hdr := range []string{"jwk", "jku", "x5u"} {
		h := map[string]any{"alg": "ES256", "kid": ks.Current().KeyID(), hdr: "x"}
		tok := b64(h) + "." + hsBody + ".sig"
		if _, err := verifyAs(t, v, auth, tok, svc); !errors.Is(err, ErrInvalid) {
			t.Errorf("header %s accepted: %v", hdr, err)
		}
	}
	// Another kind's typ is refused (G-8); "JWT" from a plain v0.1 peer is fine.
	for typ, ok := range map[string]bool{jwtcheck.TypeProof: false, "JWT": true} {
		tok, _ := jwtcheck.SignKey(ks.Current(), typ, claims(nil))
		_, err := verifyAs(t, v, auth, tok, svc)
		if (err == nil) != ok {
			t.Errorf("typ %q: %v", typ, err)
		}
	}
	// A one-element aud array (as many JWT libraries write it) is the same
	// audience; plain v0.1 peers may send it.
	arr, _ := jwtcheck.SignKey(ks.Current(), Type, claims(func(m map[string]any) { m["aud"] = []string{auth} }))
	if _, err := verifyAs(t, v, auth, arr, svc); err != nil {
		t.Errorf("one-element aud array rejected: %v", err)
	}
	// Empty expectations are a programming error, never "skip".
	if _, err := verifyAs(t, v, auth, good, ""); err == nil {
		t.Error("empty issuer expectation accepted")
	}
}

// TestRotation: an assertion signed by a retiring key still verifies
// (issue 5 item 9).
func TestRotation(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	old := ks.Current()
	tok, _ := Sign(old, svc, auth, time.Minute, t0)
	next, _ := dpop.GenerateKey("")
	ks.Rotate(next)
	v := jwksFinder{jwksURL, ks}
	if _, err := verifyAs(t, v, auth, tok, svc); err != nil {
		t.Fatalf("assertion from the retiring key rejected: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	ks, _ := dpop.GenerateKeySet()
	tok, _ := Sign(ks.Current(), svc, auth, 0, t0)
	f.Add(tok)
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		v := jwksFinder{jwksURL, ks}
		if c, err := verifyAs(t, v, auth, s, svc); err == nil && (c.Issuer != svc || c.Audience != auth) {
			t.Fatalf("accepted wrong claims %+v", c)
		}
	})
}

// keyFinderFunc adapts a function to KeyFinder.
type keyFinderFunc func(ctx context.Context, url, kid string) (*jose.JSONWebKey, error)

func (f keyFinderFunc) LookupKey(ctx context.Context, url, kid string) (*jose.JSONWebKey, error) {
	return f(ctx, url, kid)
}

// joseSign signs claims with any go-jose key, bypassing dpop's key checks,
// to build tokens our own signer would refuse to make.
func joseSign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, header map[string]any, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
	for k, v := range header {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestVerifyKeyHardening: G-6 — the key a KeyFinder returns is checked
// before use: a missing key is an error (never a panic), an RSA key
// shorter than 2048 bits or a key of an unsupported type is refused, a typ
// that is not a string is refused (G-8), and HMAC is refused whatever the
// key finder returns.
func TestVerifyKeyHardening(t *testing.T) {
	claims := map[string]any{"iss": svc, "aud": auth, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix(), "jti": "j"}

	t.Run("nil key without error", func(t *testing.T) {
		ks, _ := dpop.GenerateKeySet()
		tok, _ := Sign(ks.Current(), svc, auth, 0, t0)
		v := keyFinderFunc(func(context.Context, string, string) (*jose.JSONWebKey, error) { return nil, nil })
		if _, err := verifyAs(t, v, auth, tok, svc); !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	})

	t.Run("RSA key below 2048 bits", func(t *testing.T) {
		weak, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		tok := joseSign(t, jose.RS256, weak, "weak", map[string]any{"typ": Type}, claims)
		v := keyFinderFunc(func(_ context.Context, _, kid string) (*jose.JSONWebKey, error) {
			return &jose.JSONWebKey{Key: &weak.PublicKey, KeyID: kid, Use: "sig"}, nil
		})
		if _, err := verifyAs(t, v, auth, tok, svc); !errors.Is(err, ErrInvalid) {
			t.Fatalf("1024-bit RSA key accepted: %v", err)
		}
	})

	ks, _ := dpop.GenerateKeySet()
	v := jwksFinder{jwksURL, ks}
	signer, ok := ks.Current().Signer().(*ecdsa.PrivateKey)
	if !ok {
		t.Fatal("GenerateKeySet is not ECDSA")
	}

	t.Run("typ not a string", func(t *testing.T) {
		tok := joseSign(t, jose.ES256, signer, ks.Current().KeyID(), map[string]any{"typ": 7}, claims)
		if _, err := verifyAs(t, v, auth, tok, svc); !errors.Is(err, ErrInvalid) {
			t.Fatalf("numeric typ accepted: %v", err)
		}
	})

	t.Run("HS256 with a shared secret", func(t *testing.T) {
		mac := hmac.New(sha256.New, []byte("shared"))
		input := b64(map[string]any{"alg": "HS256", "kid": "h"}) + "." + b64(claims)
		mac.Write([]byte(input))
		tok := input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		hv := keyFinderFunc(func(_ context.Context, _, kid string) (*jose.JSONWebKey, error) {
			return &jose.JSONWebKey{Key: []byte("shared"), KeyID: kid}, nil
		})
		if _, err := verifyAs(t, hv, auth, tok, svc); !errors.Is(err, ErrInvalid) {
			t.Fatalf("HS256 accepted: %v", err)
		}
	})
}
