package jwtcheck_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// profiles lists every kind with the header members its tokens need.
var profiles = []*jwtcheck.Profile{
	jwtcheck.HarnessProof, jwtcheck.TaskAttestation, jwtcheck.HarnessAttestation,
	jwtcheck.DPoP, jwtcheck.Assertion, jwtcheck.SecurityEvent,
}

type testKey struct {
	priv *ecdsa.PrivateKey
	jwk  jose.JSONWebKey
}

func newTestKey(t testing.TB) *testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{priv: priv, jwk: jose.JSONWebKey{Key: &priv.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRaw signs exactly the given header and payload bytes with ES256, so
// tests can build tokens our signer would never make.
func (k *testKey) signRaw(t testing.TB, header, payload []byte) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	h := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64(sig)
}

// header returns a header p accepts, plus extra members.
func (k *testKey) header(t testing.TB, p *jwtcheck.Profile, extra map[string]any) map[string]any {
	t.Helper()
	h := map[string]any{"alg": "ES256", "typ": p.Typ}
	if p.EmbeddedJWK {
		pub := k.jwk.Public()
		pub.KeyID, pub.Use, pub.Algorithm = "", "", ""
		var m map[string]any
		_ = json.Unmarshal(mustJSON(t, pub), &m)
		h["jwk"] = m
	} else {
		h["kid"] = k.jwk.KeyID
	}
	for name, v := range extra {
		if v == nil {
			delete(h, name)
		} else {
			h[name] = v
		}
	}
	return h
}

// claims returns claims valid at t0 for p, with changes (nil deletes).
func claims(p *jwtcheck.Profile, changes map[string]any) map[string]any {
	c := map[string]any{"iss": "https://a.example", "aud": "https://b.example", "iat": t0.Unix(), "jti": "jti-1"}
	if p.Exp != jwtcheck.ExpForbidden {
		c["exp"] = t0.Add(time.Minute).Unix()
	}
	for name, v := range changes {
		if v == nil {
			delete(c, name)
		} else {
			c[name] = v
		}
	}
	return c
}

func (k *testKey) token(t testing.TB, p *jwtcheck.Profile, header, claimChanges map[string]any) string {
	t.Helper()
	return k.signRaw(t, mustJSON(t, k.header(t, p, header)), mustJSON(t, claims(p, claimChanges)))
}

// verifyKey is the key a verifier would use for a token of p.
func (k *testKey) verifyKey(p *jwtcheck.Profile) *jose.JSONWebKey {
	if p.EmbeddedJWK {
		pub := k.jwk.Public()
		pub.Algorithm = ""
		return &pub
	}
	return &k.jwk
}

// opaque wraps k for jwtcheck.Sign as dpop does.
func opaque(k *testKey) jose.OpaqueSigner { return cryptosigner.Opaque(k.priv) }

func decodeB64(s string) ([]byte, error) { return base64.RawURLEncoding.Strict().DecodeString(s) }
