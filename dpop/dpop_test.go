package dpop

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

const (
	apiURL      = "https://service.example/api/tickets"
	accessToken = "at_4f1d3c2b1a0998877665544332211"
)

func jwkMap(t testing.TB, k *Key) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(k.PublicJSON(), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "kid")
	return m
}

func baseDPoPClaims() map[string]any {
	return map[string]any{
		"jti": "dpop-jti-1", "htm": "GET", "htu": apiURL, "iat": t0.Unix(), "ath": tokenHash(accessToken),
	}
}

func newDPoPVerifier(t testing.TB, now time.Time) *DPoPVerifier {
	return mustDPoPVerifier(t, DPoPVerifierConfig{Replay: NewMemoryReplayCache(WithLimit(100), WithClock(fixed(now))), Now: fixed(now)})
}

// RFC 9449 §4.2: the proof DPoPProof makes verifies, and binds to the
// key's thumbprint.
func TestDPoPRoundTrip(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			k := mustKey(t, alg)
			proof, err := k.DPoPProof("GET", apiURL+"?page=2#x", accessToken, "n-1", t0)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSignedCompact(proof, algorithms)
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Header
			if h.ExtraHeaders["typ"] != typeDPoP || h.JSONWebKey == nil || h.KeyID != "" {
				t.Errorf("header = %+v", h)
			}
			at := t0.Add(2 * time.Second)
			v := mustDPoPVerifier(t, DPoPVerifierConfig{Replay: NewMemoryReplayCache(WithLimit(100), WithClock(fixed(at))), Now: fixed(at), Nonce: func(n string) error {
				if n != "n-1" {
					return errors.New("stale")
				}
				return nil
			}})
			got, err := v.Verify(context.Background(), proof, "GET", apiURL, accessToken, k.Thumbprint())
			if err != nil {
				t.Fatal(err)
			}
			want := &DPoPClaims{JTI: got.JTI, HTM: "GET", HTU: apiURL, ATH: tokenHash(accessToken),
				Nonce: "n-1", IssuedAt: t0, JKT: k.Thumbprint()}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
	// Token endpoint: no access token yet; the caller binds the new token
	// to the returned JKT.
	k := mustKey(t, "")
	proof, err := k.DPoPProof("POST", "https://service.example/token", "", "", t0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := newDPoPVerifier(t, t0).Verify(context.Background(), proof, "POST", "https://service.example/token", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.JKT != k.Thumbprint() || got.ATH != "" {
		t.Errorf("claims = %+v", got)
	}
	if _, err := k.DPoPProof("", apiURL, "", "", t0); err == nil {
		t.Error("empty method accepted")
	}
	if _, err := k.DPoPProof("GET", "not a url", "", "", t0); err == nil {
		t.Error("bad URL accepted")
	}
}

// One row per rejection (RFC 9449 §4.3 checks, G-6).
func TestDPoPVerify(t *testing.T) {
	k := mustKey(t, "ES256")
	other := mustKey(t, "ES256")
	hdr := func(k *Key) map[string]any { return map[string]any{"typ": typeDPoP, "jwk": jwkMap(t, k)} }
	good := func(t *testing.T) string { return craft(t, k, hdr(k), baseDPoPClaims(), nil) }
	privJWK := func() map[string]any {
		priv := jose.JSONWebKey{Key: k.Signer()}
		b, _ := priv.MarshalJSON()
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	tests := []struct {
		name    string
		token   func(t *testing.T) string
		now     time.Time
		method  string
		url     string
		jkt     string // k's thumbprint when empty; "-" for none
		token2  string // accessToken; accessToken when empty, "-" for none
		nonce   func(string) error
		twice   bool
		reason  string
		also    error
		accept  bool
		wantCfg bool
	}{
		{name: "accept", token: good, accept: true},
		{name: "accept: iat within skew ahead", now: t0.Add(-30 * time.Second), token: good, accept: true},
		{name: "missing typ", token: func(t *testing.T) string {
			return craft(t, k, with(hdr(k), "typ", nil), baseDPoPClaims(), nil)
		}, reason: "typ must be"},
		{name: "generic typ JWT", token: func(t *testing.T) string {
			return craft(t, k, with(hdr(k), "typ", "JWT"), baseDPoPClaims(), nil)
		}, reason: "typ must be"},
		{name: "harness proof typ", token: func(t *testing.T) string {
			return craft(t, k, with(hdr(k), "typ", typeProof), baseDPoPClaims(), nil)
		}, reason: "typ must be"},
		{name: "no jwk header", token: func(t *testing.T) string {
			return craft(t, k, with(hdr(k), "jwk", nil), baseDPoPClaims(), nil)
		}, reason: "missing jwk"},
		{name: "jwk of another key", token: func(t *testing.T) string {
			return craft(t, k, hdr(other), baseDPoPClaims(), nil)
		}, reason: "bad signature"},
		{name: "private jwk", token: func(t *testing.T) string {
			return craft(t, k, with(hdr(k), "jwk", privJWK()), baseDPoPClaims(), nil)
		}},
		{name: "symmetric jwk", token: func(t *testing.T) string {
			return craft(t, k, with(hdr(k), "jwk", map[string]any{"kty": "oct", "k": "c2VjcmV0"}), baseDPoPClaims(), nil)
		}},
		{name: "kid with jwk", token: func(t *testing.T) string {
			return craft(t, k, with(hdr(k), "kid", "k1"), baseDPoPClaims(), nil)
		}, reason: "kid header"},
		{name: "x5u header", token: func(t *testing.T) string {
			return craft(t, k, with(hdr(k), "x5u", "https://evil.example/c"), baseDPoPClaims(), nil)
		}, reason: "forbidden header x5u"},
		{name: "alg none", token: func(t *testing.T) string {
			return craft(t, nil, with(hdr(k), "alg", "none"), baseDPoPClaims(), nil)
		}, reason: "not allowed"},
		{name: "HS256 with the public key bytes", token: func(t *testing.T) string {
			return craft(t, nil, with(hdr(k), "alg", "HS256"), baseDPoPClaims(), k.PublicJSON())
		}, reason: "not allowed"},
		{name: "tampered", token: func(t *testing.T) string { return tamper(good(t)) }},
		{name: "wrong htm", method: "POST", token: good, reason: "htm mismatch"},
		{name: "wrong htu", url: "https://service.example/api/other", token: good, reason: "htu mismatch"},
		{name: "missing jti", token: func(t *testing.T) string {
			return craft(t, k, hdr(k), with(baseDPoPClaims(), "jti", nil), nil)
		}, reason: "missing jti"},
		{name: "missing htm", token: func(t *testing.T) string {
			return craft(t, k, hdr(k), with(baseDPoPClaims(), "htm", nil), nil)
		}, reason: "missing htm"},
		{name: "missing htu", token: func(t *testing.T) string {
			return craft(t, k, hdr(k), with(baseDPoPClaims(), "htu", nil), nil)
		}, reason: "missing htu"},
		{name: "missing iat", token: func(t *testing.T) string {
			return craft(t, k, hdr(k), with(baseDPoPClaims(), "iat", nil), nil)
		}, reason: "missing iat"},
		{name: "future iat", now: t0.Add(-61 * time.Second), token: good, reason: "iat in the future"},
		{name: "too old", now: t0.Add(DefaultMaxLifetime + DefaultSkew + time.Second), token: good, reason: "too old"},
		{name: "expired exp", token: func(t *testing.T) string {
			return craft(t, k, hdr(k), with(baseDPoPClaims(), "exp", t0.Add(-2*time.Minute).Unix()), nil)
		}, reason: "expired"},
		{name: "replayed jti", twice: true, token: good, reason: "replayed", also: ErrReplay},
		{name: "wrong ath", token: func(t *testing.T) string {
			return craft(t, k, hdr(k), with(baseDPoPClaims(), "ath", tokenHash("other")), nil)
		}, reason: "ath mismatch"},
		{name: "missing ath", token: func(t *testing.T) string {
			return craft(t, k, hdr(k), with(baseDPoPClaims(), "ath", nil), nil)
		}, reason: "missing ath"},
		{name: "token bound to another key", jkt: other.Thumbprint(), token: good, reason: "cnf.jkt"},
		{name: "nonce rejected", nonce: func(string) error { return errors.New("stale") }, token: good,
			reason: "nonce", also: ErrUseDPoPNonce},
		{name: "config: token without wantJKT", jkt: "-", token: good, wantCfg: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			v := mustDPoPVerifier(t, DPoPVerifierConfig{Replay: NewMemoryReplayCache(WithLimit(100), WithClock(fixed(now))), Now: fixed(now), Nonce: tt.nonce})
			method, url, jkt, at := "GET", apiURL, k.Thumbprint(), accessToken
			if tt.method != "" {
				method = tt.method
			}
			if tt.url != "" {
				url = tt.url
			}
			switch tt.jkt {
			case "-":
				jkt = ""
			case "":
			default:
				jkt = tt.jkt
			}
			proof := tt.token(t)
			if tt.twice {
				if _, err := v.Verify(context.Background(), proof, method, url, at, jkt); err != nil {
					t.Fatalf("first use rejected: %v", err)
				}
			}
			got, err := v.Verify(context.Background(), proof, method, url, at, jkt)
			switch {
			case tt.accept:
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if got.JKT != k.Thumbprint() {
					t.Errorf("JKT = %q", got.JKT)
				}
				return
			case tt.wantCfg:
				wantReason(t, err, ErrInvalidConfig, "")
				return
			}
			wantReason(t, err, ErrInvalidDPoP, tt.reason)
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("err = %v, want it to match %v too", err, tt.also)
			}
		})
	}
}

func TestDPoPVerifierConfig(t *testing.T) {
	k := mustKey(t, "")
	proof, _ := k.DPoPProof("GET", apiURL, "", "", t0)
	if _, err := NewDPoPVerifier(DPoPVerifierConfig{Now: fixed(t0)}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil Replay: err = %v", err)
	}
	// Review Low 5: a MaxAge of centuries overflowed the replay record.
	for _, cfg := range []DPoPVerifierConfig{{MaxAge: 24*time.Hour + 1}, {Skew: 200 * 365 * 24 * time.Hour}} {
		cfg.Replay, cfg.Now = NewMemoryReplayCache(WithLimit(1)), fixed(t0)
		if v, err := NewDPoPVerifier(cfg); !errors.Is(err, ErrInvalidConfig) || v != nil {
			t.Errorf("MaxAge %v, Skew %v: NewDPoPVerifier = %v, %v; want ErrInvalidConfig", cfg.MaxAge, cfg.Skew, v, err)
		}
	}
	var zero DPoPVerifier
	if _, err := zero.Verify(context.Background(), proof, "GET", apiURL, "", ""); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("zero value: err = %v", err)
	}
	v := newDPoPVerifier(t, t0)
	if _, err := v.Verify(context.Background(), proof, "", apiURL, "", ""); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("empty method: err = %v", err)
	}
	if !strings.HasPrefix(ErrUseDPoPNonce.Error(), "dpop: ") {
		t.Error("sentinel lacks prefix")
	}
}

// TestDPoPReplayAtAgeBoundary: RFC 9449 §11.1, G-3, G-7 — a proof is
// accepted only while its replay record can still be held. At exactly
// iat + MaxAge + Skew the replay cache treats the record as expired (and
// does not store it), so the verifier must already reject the proof as too
// old; otherwise it can be replayed any number of times at that instant.
func TestDPoPReplayAtAgeBoundary(t *testing.T) {
	k := mustKey(t, "")
	proof, err := k.DPoPProof("GET", apiURL, accessToken, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	v := newDPoPVerifier(t, t0.Add(DefaultMaxLifetime+DefaultSkew))
	for i := range 2 {
		_, err := v.Verify(context.Background(), proof, "GET", apiURL, accessToken, k.Thumbprint())
		if !errors.Is(err, ErrInvalidDPoP) {
			t.Fatalf("verify #%d at iat+MaxAge+Skew: err = %v, want ErrInvalidDPoP", i+1, err)
		}
	}
	// One second earlier it is accepted once, then refused as a replay.
	v = newDPoPVerifier(t, t0.Add(DefaultMaxLifetime+DefaultSkew-time.Second))
	if _, err := v.Verify(context.Background(), proof, "GET", apiURL, accessToken, k.Thumbprint()); err != nil {
		t.Fatalf("first verify: %v", err)
	}
	if _, err := v.Verify(context.Background(), proof, "GET", apiURL, accessToken, k.Thumbprint()); !errors.Is(err, ErrReplay) {
		t.Fatalf("second verify: err = %v, want ErrReplay", err)
	}
}
