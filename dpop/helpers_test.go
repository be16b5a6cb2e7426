package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Fixed test clock and identities.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	harnessID = "harness-7f2c"
	svcOrigin = "https://service.example"
	redeemURL = "https://service.example/agentpass/redeem-bearer-token"
	passValue = "ap_8f3a1b2c4d5e6f7a8b9c0d1e2f3a4b5c"
)

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func mustProofVerifier(t testing.TB, cfg ProofVerifierConfig) *ProofVerifier {
	t.Helper()
	v, err := NewProofVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustDPoPVerifier(t testing.TB, cfg DPoPVerifierConfig) *DPoPVerifier {
	t.Helper()
	v, err := NewDPoPVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustAttestationVerifier(t testing.TB, cfg AttestationVerifierConfig) *AttestationVerifier {
	t.Helper()
	v, err := NewAttestationVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// craft builds a compact JWS with exactly the given header and claims,
// signed by k with header["alg"] (k's algorithm when absent). With alg
// "none" the signature is empty; with an HS* alg it is an HMAC keyed with
// hmacKey (the classic "public key as HMAC secret" attack).
func craft(t testing.TB, k *Key, header, claims map[string]any, hmacKey []byte) string {
	t.Helper()
	h := maps.Clone(header)
	if h == nil {
		h = map[string]any{}
	}
	if _, ok := h["alg"]; !ok {
		h["alg"] = k.Algorithm()
	}
	input := b64JSON(t, h) + "." + b64JSON(t, claims)
	alg := h["alg"].(string)
	switch {
	case alg == "none":
		return input + "."
	case strings.HasPrefix(alg, "HS"):
		m := hmac.New(sha256.New, hmacKey)
		m.Write([]byte(input))
		return input + "." + b64(m.Sum(nil))
	}
	sig, err := k.opaque.SignPayload([]byte(input), jose.SignatureAlgorithm(alg))
	if err != nil {
		t.Fatalf("craft: %v", err)
	}
	return input + "." + b64(sig)
}

// with returns a copy of m with the given members set; a nil value deletes.
func with(m map[string]any, kv ...any) map[string]any {
	c := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

// wantReason asserts err matches kind and, when reason is not empty, that
// its *Error reason contains it.
func wantReason(t *testing.T, err, kind error, reason string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want %v", err, kind)
	}
	if !strings.HasPrefix(err.Error(), "dpop: ") {
		t.Errorf("error %q lacks the dpop: prefix", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err %v is not a *dpop.Error", err)
	}
	if reason != "" && !strings.Contains(e.Reason, reason) {
		t.Errorf("reason = %q, want it to contain %q", e.Reason, reason)
	}
}

// tamper flips one character of the payload segment.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p := []byte(parts[1])
	i := len(p) / 2
	if p[i] == 'A' {
		p[i] = 'B'
	} else {
		p[i] = 'A'
	}
	parts[1] = string(p)
	return strings.Join(parts, ".")
}

// signJWT signs arbitrary claims with k (typ "JWT" when empty), for tests
// that need a token no public signer makes.
func signJWT(k *Key, typ string, claims any) (string, error) {
	if k == nil {
		return "", newErr(ErrInvalidKey, "nil key")
	}
	if typ == "" {
		typ = "JWT"
	}
	return k.sign(typ, false, claims)
}
