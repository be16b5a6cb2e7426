package dpop

import (
	"github.com/agentpass-go/agentpass/internal/jwtcheck"

	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func baseProofClaims() map[string]any {
	return map[string]any{
		"iss": harnessID, "aud": svcOrigin,
		"iat": t0.Unix(), "exp": t0.Add(60 * time.Second).Unix(), "jti": "jti-1",
		"htm": "POST", "htu": redeemURL, "aph": PassHash(passValue),
	}
}

var proofHeader = map[string]any{"typ": typeProof}

func newProofVerifier(t testing.TB, now time.Time) *ProofVerifier {
	return mustProofVerifier(t, ProofVerifierConfig{
		Audience: svcOrigin,
		Replay:   NewMemoryReplayCache(WithLimit(100), WithClock(fixed(now))),
		Now:      fixed(now),
	})
}

var proofReq = ProofRequest{Method: "POST", URL: redeemURL, AgentPass: passValue, HarnessID: harnessID}

// HB-4, HB-5, HB-6: a proof made by HarnessProof carries every claim and
// verifies with the key sent at issuance.
func TestHarnessProofRoundTrip(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "ES384", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			k := mustKey(t, alg)
			tok, err := k.HarnessProof(ProofParams{
				HarnessID: harnessID, Audience: "https://SERVICE.example:443",
				Method: "POST", URL: redeemURL + "?q=1#f", AgentPass: passValue, Now: t0,
			})
			if err != nil {
				t.Fatal(err)
			}
			v := newProofVerifier(t, t0.Add(5*time.Second))
			req := proofReq
			req.RequireBinding = true
			got, err := v.Verify(context.Background(), tok, k.PublicJSON(), req)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.JTI) < 22 {
				t.Errorf("jti %q shorter than 128 bits", got.JTI)
			}
			want := &ProofClaims{
				Issuer: harnessID, Audience: svcOrigin, JTI: got.JTI,
				HTM: "POST", HTU: redeemURL, APH: PassHash(passValue),
				IssuedAt: t0, Expiry: t0.Add(defaultProofTTL),
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			tok2, _ := k.HarnessProof(ProofParams{HarnessID: harnessID, Audience: svcOrigin, Now: t0})
			got2, err := newProofVerifier(t, t0).Verify(context.Background(), tok2, k.PublicJSON(), ProofRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if got2.JTI == got.JTI {
				t.Error("two proofs share a jti (HB-4)")
			}
		})
	}
}

// One row per rejection, plus the accepting cases (HB-7, G-3, G-6, G-7,
// G-8, je.harden-holder-binding).
func TestProofVerify(t *testing.T) {
	k := mustKey(t, "ES256")
	other := mustKey(t, "ES256")
	ed := mustKey(t, "EdDSA")
	good := func(t *testing.T) string { return craft(t, k, proofHeader, baseProofClaims(), nil) }
	tests := []struct {
		name   string
		token  func(t *testing.T) string
		cnf    json.RawMessage // k's key when nil
		now    time.Time       // t0 when zero
		req    *ProofRequest   // proofReq when nil
		strict bool
		twice  bool   // verify once before (replay)
		reason string // "" = accept
		also   error  // an additional sentinel the error must match
	}{
		// Accepting cases.
		{name: "accept: full proof, strict", token: good, strict: true},
		{name: "accept: v0.1 proof without htm/htu/aph/typ", token: func(t *testing.T) string {
			return craft(t, k, nil, with(baseProofClaims(), "htm", nil, "htu", nil, "aph", nil), nil)
		}},
		{name: "accept: generic typ JWT", token: func(t *testing.T) string {
			return craft(t, k, map[string]any{"typ": "JWT"}, baseProofClaims(), nil)
		}},
		{name: "accept: EdDSA holder key", cnf: ed.PublicJSON(), token: func(t *testing.T) string {
			return craft(t, ed, proofHeader, baseProofClaims(), nil)
		}},
		{name: "accept: aud in another serialisation of the origin", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "aud", []string{"https://Service.Example:443/"}), nil)
		}},
		{name: "accept: request URL with query", req: &ProofRequest{Method: "POST", URL: redeemURL + "?x=1", AgentPass: passValue}, token: good},
		{name: "accept: iat within skew in the future", now: t0.Add(-50 * time.Second), token: good},
		{name: "accept: expired but within skew", now: t0.Add(90 * time.Second), token: good},
		// Rejections.
		{name: "wrong key", cnf: other.PublicJSON(), token: good, reason: "bad signature"},
		{name: "alg fits another key type", cnf: ed.PublicJSON(), token: good, reason: "does not fit"},
		{name: "tampered payload", token: func(t *testing.T) string { return tamper(good(t)) }, reason: ""},
		{name: "wrong aud", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "aud", "https://other.example"), nil)
		}, reason: "aud mismatch"},
		{name: "two audiences", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "aud", []string{svcOrigin, "https://other.example"}), nil)
		}, reason: "exactly one"},
		{name: "expired", now: t0.Add(121 * time.Second), token: good, reason: "expired"},
		{name: "future iat", now: t0.Add(-61 * time.Second), token: good, reason: "iat in the future"},
		{name: "lifetime above 300 s", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "exp", t0.Add(301*time.Second).Unix()), nil)
		}, reason: "lifetime"},
		{name: "exp before iat", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "exp", t0.Add(-time.Second).Unix()), nil)
		}, now: t0.Add(-30 * time.Second), reason: "exp not after iat"},
		{name: "replayed jti", token: good, twice: true, reason: "replayed", also: ErrReplay},
		{name: "alg none", token: func(t *testing.T) string {
			return craft(t, nil, map[string]any{"alg": "none"}, baseProofClaims(), nil)
		}, reason: "not allowed"},
		{name: "HS256 signed with the public key bytes", token: func(t *testing.T) string {
			return craft(t, nil, map[string]any{"alg": "HS256"}, baseProofClaims(), k.PublicJSON())
		}, reason: "not allowed"},
		{name: "wrong htu", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "htu", "https://service.example/other"), nil)
		}, reason: "htu mismatch"},
		{name: "wrong htm", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "htm", "GET"), nil)
		}, reason: "htm mismatch"},
		{name: "wrong aph", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "aph", PassHash("ap_other")), nil)
		}, reason: "aph mismatch"},
		{name: "aph present but pass unknown", req: &ProofRequest{Method: "POST", URL: redeemURL}, token: good, reason: "aph mismatch"},
		{name: "iss mismatch", req: &ProofRequest{Method: "POST", URL: redeemURL, AgentPass: passValue, HarnessID: "other-harness"}, token: good, reason: "iss mismatch"},
		{name: "strict: missing htm", strict: true, token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "htm", nil), nil)
		}, reason: "missing htm"},
		{name: "strict: missing htu", strict: true, token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "htu", nil), nil)
		}, reason: "missing htu"},
		{name: "strict: missing aph", strict: true, token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "aph", nil), nil)
		}, reason: "missing aph"},
		{name: "missing jti", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "jti", nil), nil)
		}, reason: "missing jti"},
		{name: "missing aud", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "aud", nil), nil)
		}, reason: "missing aud"},
		{name: "missing iss", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "iss", nil), nil)
		}, reason: "missing iss"},
		{name: "missing exp", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "exp", nil), nil)
		}, reason: "missing exp"},
		{name: "iss not a string", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "iss", 7), nil)
		}, reason: "malformed claims"},
		{name: "kind confusion: task_id in a proof", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, with(baseProofClaims(), "task_id", "t1"), nil)
		}, reason: "task attestation claims"},
		{name: "kind confusion: task attestation typ", token: func(t *testing.T) string {
			return craft(t, k, map[string]any{"typ": typeTaskAttestation}, baseProofClaims(), nil)
		}, reason: "wrong typ"},
		{name: "kind confusion: DPoP typ", token: func(t *testing.T) string {
			return craft(t, k, map[string]any{"typ": typeDPoP}, baseProofClaims(), nil)
		}, reason: "wrong typ"},
		{name: "jku header", token: func(t *testing.T) string {
			return craft(t, k, map[string]any{"jku": "https://evil.example/jwks"}, baseProofClaims(), nil)
		}, reason: "forbidden header jku"},
		{name: "x5u header", token: func(t *testing.T) string {
			return craft(t, k, map[string]any{"x5u": "https://evil.example/cert"}, baseProofClaims(), nil)
		}, reason: "forbidden header x5u"},
		{name: "jwk header", token: func(t *testing.T) string {
			var jwk map[string]any
			_ = json.Unmarshal(k.PublicJSON(), &jwk)
			return craft(t, k, map[string]any{"jwk": jwk}, baseProofClaims(), nil)
		}, reason: "forbidden header jwk"},
		{name: "crit header", token: func(t *testing.T) string {
			return craft(t, k, map[string]any{"crit": []string{"exp"}}, baseProofClaims(), nil)
		}, reason: "forbidden header crit"},
		{name: "cnf with private key", cnf: json.RawMessage(`{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}`), token: good, reason: "cnf.jwk", also: ErrInvalidKey},
		{name: "cnf symmetric", cnf: json.RawMessage(`{"kty":"oct","k":"c2VjcmV0"}`), token: good, reason: "cnf.jwk", also: ErrInvalidKey},
		{name: "not a JWS", token: func(*testing.T) string { return "a.b" }, reason: "not a compact JWS"},
		{name: "empty", token: func(*testing.T) string { return "" }, reason: "empty token"},
		{name: "too large", token: func(*testing.T) string { return strings.Repeat("a", jwtcheck.HarnessProof.MaxBytes+1) }, reason: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			v := newProofVerifier(t, now)
			cnf := tt.cnf
			if cnf == nil {
				cnf = k.PublicJSON()
			}
			req := proofReq
			if tt.req != nil {
				req = *tt.req
			}
			req.RequireBinding = tt.strict
			tok := tt.token(t)
			if tt.twice {
				if _, err := v.Verify(context.Background(), tok, cnf, req); err != nil {
					t.Fatalf("first use rejected: %v", err)
				}
			}
			got, err := v.Verify(context.Background(), tok, cnf, req)
			if strings.HasPrefix(tt.name, "accept") {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if got.Issuer != harnessID || got.JTI != "jti-1" {
					t.Errorf("claims = %+v", got)
				}
				return
			}
			wantReason(t, err, ErrInvalidProof, tt.reason)
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("err = %v, want it to match %v too", err, tt.also)
			}
			if got != nil {
				t.Errorf("claims returned with an error: %+v", got)
			}
		})
	}
}

// A rejected proof does not burn its jti; only accepted proofs are recorded.
func TestProofRejectedNotRecorded(t *testing.T) {
	k := mustKey(t, "")
	v := newProofVerifier(t, t0)
	tok := craft(t, k, proofHeader, baseProofClaims(), nil)
	if _, err := v.Verify(context.Background(), tok, k.PublicJSON(), ProofRequest{Method: "GET", URL: redeemURL, AgentPass: passValue}); err == nil {
		t.Fatal("wrong method accepted")
	}
	if _, err := v.Verify(context.Background(), tok, k.PublicJSON(), proofReq); err != nil {
		t.Fatalf("valid proof rejected after an unrelated failure: %v", err)
	}
}

// Verifiers refuse empty expectations.
func TestProofVerifierConfig(t *testing.T) {
	k := mustKey(t, "")
	tok := craft(t, k, proofHeader, baseProofClaims(), nil)
	tests := []struct {
		name string
		cfg  ProofVerifierConfig
	}{
		{"empty audience", ProofVerifierConfig{Replay: NewMemoryReplayCache(WithLimit(1))}},
		{"audience not an origin", ProofVerifierConfig{Audience: "service.example", Replay: NewMemoryReplayCache(WithLimit(1))}},
		{"no replay cache", ProofVerifierConfig{Audience: svcOrigin}},
		{"negative skew", ProofVerifierConfig{Audience: svcOrigin, Replay: NewMemoryReplayCache(WithLimit(1)), Skew: -time.Second}},
		// Review Low 5: a lifetime of centuries overflowed the replay record.
		{"MaxLifetime over 24h", ProofVerifierConfig{Audience: svcOrigin, Replay: NewMemoryReplayCache(WithLimit(1)), MaxLifetime: 24*time.Hour + 1}},
		{"skew over 24h", ProofVerifierConfig{Audience: svcOrigin, Replay: NewMemoryReplayCache(WithLimit(1)), Skew: 200 * 365 * 24 * time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Now = fixed(t0)
			v, err := NewProofVerifier(tt.cfg)
			wantReason(t, err, ErrInvalidConfig, "")
			if v != nil {
				t.Error("verifier returned with an error")
			}
		})
	}
	// The zero value refuses every proof.
	var zero ProofVerifier
	_, err := zero.Verify(context.Background(), tok, k.PublicJSON(), proofReq)
	wantReason(t, err, ErrInvalidConfig, "")
	if _, err := zero.Precheck(context.Background(), tok, proofReq); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("zero Precheck: err = %v", err)
	}
}

// A replay cache failure rejects the proof and is not reported as an
// invalid proof (fail closed, answer 503).
func TestProofReplayCacheFull(t *testing.T) {
	k := mustKey(t, "")
	v := mustProofVerifier(t, ProofVerifierConfig{Audience: svcOrigin, Replay: NewMemoryReplayCache(WithLimit(1), WithClock(fixed(t0))), Now: fixed(t0)})
	first := craft(t, k, proofHeader, baseProofClaims(), nil)
	second := craft(t, k, proofHeader, with(baseProofClaims(), "jti", "jti-2"), nil)
	if _, err := v.Verify(context.Background(), first, k.PublicJSON(), proofReq); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(context.Background(), second, k.PublicJSON(), proofReq)
	if !errors.Is(err, ErrReplayCacheFull) || errors.Is(err, ErrInvalidProof) {
		t.Errorf("err = %v, want ErrReplayCacheFull and not ErrInvalidProof", err)
	}
}

func TestHarnessProofParams(t *testing.T) {
	k := mustKey(t, "")
	tests := []struct {
		name string
		p    ProofParams
	}{
		{"no harness id", ProofParams{Audience: svcOrigin}},
		{"audience not https", ProofParams{HarnessID: harnessID, Audience: "http://service.example"}},
		{"bad URL", ProofParams{HarnessID: harnessID, Audience: svcOrigin, URL: "ftp://x/y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := k.HarnessProof(tt.p); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestNormalizeHTU(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://Service.Example/a/b?q=1#frag", "https://service.example/a/b"},
		{"HTTPS://service.example:443", "https://service.example/"},
		{"http://service.example:80/x", "http://service.example/x"},
		{"https://service.example:8443/x", "https://service.example:8443/x"},
		{"https://service.example/%7Euser", "https://service.example/~user"},
		{"https://[::1]:8443/p", "https://[::1]:8443/p"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeHTU(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("normalizeHTU(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "/relative", "mailto:a@b", "ftp://h/x", "https://", "::"} {
		if _, err := normalizeHTU(bad); err == nil {
			t.Errorf("normalizeHTU(%q) accepted", bad)
		}
	}
	if sameHTU("https://a.example/x", "https://a.example/y") || !sameHTU("https://A.example/x?1", "https://a.example/x") {
		t.Error("sameHTU")
	}
}

// TestProofPrecheck: Precheck refuses, without the holder key, every proof
// whose unverified claims can never pass Verify, records nothing, and
// accepts a proof Verify would accept (so a Service can check before it
// consumes the pass).
func TestProofPrecheck(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	k, err := GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	const svc, url, ap = "https://svc.example.com", "https://svc.example.com/agentpass/redeem-bearer-token", "ap_value"
	replay := NewMemoryReplayCache(WithLimit(10), WithClock(func() time.Time { return now }))
	v := mustProofVerifier(t, ProofVerifierConfig{Audience: svc, Replay: replay, Now: func() time.Time { return now }})
	req := ProofRequest{Method: "POST", URL: url, AgentPass: ap, RequireBinding: true}
	mk := func(p ProofParams) string {
		p.HarnessID, p.Now = "h1", now
		if p.Audience == "" {
			p.Audience = svc
		}
		s, err := k.HarnessProof(p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := mk(ProofParams{Method: "POST", URL: url, AgentPass: ap})
	if _, err := v.Precheck(context.Background(), good, req); err != nil {
		t.Fatalf("good proof refused: %v", err)
	}
	if replay.Len() != 0 {
		t.Fatal("Precheck recorded a jti")
	}
	if _, err := v.Verify(context.Background(), good, k.PublicJSON(), req); err != nil {
		t.Fatalf("Verify after Precheck: %v", err)
	}
	// G-3: a recorded jti is refused before any irreversible step (the
	// fixed wire reasons are tested in internal/proofwire).
	if _, err := v.Precheck(context.Background(), good, req); !errors.Is(err, ErrReplay) || !errors.Is(err, ErrInvalidProof) {
		t.Errorf("replayed proof at Precheck: %v, want ErrReplay", err)
	}
	for name, bad := range map[string]string{
		"wrong htu":      mk(ProofParams{Method: "POST", URL: svc + "/other", AgentPass: ap}),
		"wrong htm":      mk(ProofParams{Method: "PUT", URL: url, AgentPass: ap}),
		"wrong aph":      mk(ProofParams{Method: "POST", URL: url, AgentPass: "other"}),
		"wrong aud":      mk(ProofParams{Audience: "https://other.example.com", Method: "POST", URL: url, AgentPass: ap}),
		"strict missing": mk(ProofParams{Method: "POST"}),
		"garbage":        "a.b.c",
	} {
		_, err := v.Precheck(context.Background(), bad, req)
		if !errors.Is(err, ErrInvalidProof) {
			t.Errorf("%s: Precheck = %v, want ErrInvalidProof", name, err)
		}
	}
	if _, err := k.HarnessProof(ProofParams{HarnessID: "h1", Audience: svc, TTL: 10 * time.Minute, Now: now}); err == nil {
		t.Error("HarnessProof made a proof no default verifier accepts")
	}
}

// sameHTU with the memo of expected URLs answers as comparing both normal
// forms does, whether the expected URL is seen for the first time or not.
func TestSameHTUMemo(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"https://svc.example/agentpass/redeem", "https://svc.example/agentpass/redeem", true},
		{"https://SVC.example:443/agentpass/redeem", "https://svc.example/agentpass/redeem", true},
		{"https://svc.example/agentpass/redeem", "https://SVC.example:443/agentpass/redeem", true},
		{"https://svc.example/agentpass/redeem?x", "https://svc.example/agentpass/redeem", true},
		{"https://svc.example/other", "https://svc.example/agentpass/redeem", false},
		{"http://svc.example/agentpass/redeem", "https://svc.example/agentpass/redeem", false},
		{"https://svc.example/a%2Fb", "https://svc.example/a%2Fb", true},
		{"https://svc.example/a%2Fb", "https://svc.example/a/b", true},
		{"not a url", "https://svc.example/", false},
		{"https://svc.example/", "not a url", false},
	}
	for range 2 { // cold memo, then warm
		for _, c := range cases {
			if got := sameHTU(c.a, c.b); got != c.want {
				t.Errorf("sameHTU(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
			}
			na, ea := normalizeHTU(c.a)
			nb, eb := normalizeHTU(c.b)
			if ref := ea == nil && eb == nil && na == nb; ref != c.want {
				t.Errorf("normal forms of %q and %q: equal=%v, test expects %v", c.a, c.b, ref, c.want)
			}
		}
	}
}

// TestAPHMatches (#19 item 2): the aph check answers as a comparison with
// PassHash does, without allocating, for short and long pass values.
func TestAPHMatches(t *testing.T) {
	for _, v := range []string{"ap_0123456789abcdefghijklmnopqrstuvwxyzABCDEF", "x", strings.Repeat("p", 300)} {
		if !aphMatches(PassHash(v), v) {
			t.Errorf("aph of %.20q does not match", v)
		}
		for _, bad := range []string{"", PassHash(v + "x"), PassHash(v)[:42], PassHash(v) + "A"} {
			if aphMatches(bad, v) {
				t.Errorf("aph %q matched %.20q", bad, v)
			}
		}
	}
	v := "ap_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
	aph := PassHash(v)
	if n := testing.AllocsPerRun(100, func() { aphMatches(aph, v) }); n != 0 {
		t.Errorf("aphMatches: %v allocations, want 0 (PassHash: 2)", n)
	}
}

// TestProofCheckThenRecord: Check verifies without recording; Record
// refuses a proof Check did not accept, records into the cache it is given
// (a store folding the record into its write) with iss as it is and
// exp + Skew, and a second Record of the pair is a replay (G-3).
func TestProofCheckThenRecord(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	k, other := mustKey(t, ""), mustKey(t, "")
	const svc, url, ap = "https://svc.example.com", "https://svc.example.com/agentpass/redeem-bearer-token", "ap_value"
	own := NewMemoryReplayCache(WithLimit(10), WithClock(clock))
	v := mustProofVerifier(t, ProofVerifierConfig{Audience: svc, Replay: own, Now: clock, Skew: 30 * time.Second})
	req := ProofRequest{Method: "POST", URL: url, AgentPass: ap, RequireBinding: true}
	tok, err := k.HarnessProof(ProofParams{HarnessID: "h1", Audience: svc, Method: "POST", URL: url, AgentPass: ap, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := v.Precheck(ctx, tok, req)
	if err != nil {
		t.Fatal(err)
	}
	folded := &capture{}
	if err := v.Record(ctx, p, folded); !errors.Is(err, ErrInvalidProof) || folded.n != 0 {
		t.Fatalf("Record before Check: %v (%d Seen calls), want a refusal without a record", err, folded.n)
	}
	if _, err := v.Check(p, other.PublicJSON(), req); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("Check with a foreign cnf: %v", err)
	}
	if err := v.Record(ctx, p, folded); !errors.Is(err, ErrInvalidProof) || folded.n != 0 {
		t.Fatalf("Record after a failed Check: %v (%d Seen calls)", err, folded.n)
	}
	claims, err := v.Check(p, k.PublicJSON(), req)
	if err != nil || claims.Issuer != "h1" {
		t.Fatalf("Check: %+v, %v", claims, err)
	}
	if own.Len() != 0 {
		t.Fatal("Check recorded a jti")
	}
	if err := v.Record(ctx, p, folded); err != nil {
		t.Fatal(err)
	}
	if folded.n != 1 || folded.issuer != "h1" || folded.jti != claims.JTI || !folded.exp.Equal(claims.Expiry.Add(30*time.Second)) {
		t.Errorf("recorded %+v, want h1, %s, exp + Skew", folded, claims.JTI)
	}
	if own.Len() != 0 {
		t.Error("Record into a given cache also recorded into the verifier's")
	}
	if err := v.Record(ctx, p, nil); err != nil || own.Len() != 1 {
		t.Fatalf("Record into the verifier's cache: %v, %d entries", err, own.Len())
	}
	if err := v.Record(ctx, p, nil); !errors.Is(err, ErrReplay) || !errors.Is(err, ErrInvalidProof) {
		t.Errorf("second Record: %v, want ErrReplay", err)
	}
}

// capture is a replay cache that remembers its last pair and reports a
// replay from its second call on.
type capture struct {
	n           int
	issuer, jti string
	exp         time.Time
}

func (c *capture) Seen(_ context.Context, issuer, jti string, exp time.Time) (bool, error) {
	c.n++
	c.issuer, c.jti, c.exp = issuer, jti, exp
	return c.n > 1, nil
}
