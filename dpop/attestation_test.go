package dpop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

// jwksServer is a real HTTPS JWKS endpoint that counts its hits.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int32
	keys atomic.Pointer[jose.JSONWebKeySet]
}

func newJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.keys.Store(&jose.JSONWebKeySet{Keys: keys})
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.keys.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

// httpFetcher is a minimal KeyFetcher (package discovery provides the real,
// cached one): it GETs the JWKS over TLS on every call.
type httpFetcher struct{ client *http.Client }

func (f httpFetcher) LookupKey(ctx context.Context, jwksURL, kid string) (*jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: status %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&set); err != nil {
		return nil, err
	}
	keys := set.Key(kid)
	if len(keys) == 0 {
		return nil, fmt.Errorf("jwks: unknown kid")
	}
	return &keys[0], nil
}

const vendorIss = "https://vendor.example"

func baseAttClaims(t testing.TB, holder *Key) map[string]any {
	var jwk map[string]any
	if err := json.Unmarshal(holder.PublicJSON(), &jwk); err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"iss": vendorIss, "sub": harnessID, "cnf": map[string]any{"jwk": jwk},
		"iat": t0.Unix(), "exp": t0.Add(10 * time.Minute).Unix(),
	}
}

func harnessWith(holder *Key, jwt string) pass.HarnessInfo {
	h := pass.HarnessInfo{ID: harnessID, Cnf: &pass.Cnf{JWK: holder.PublicJSON()}}
	if jwt != "" {
		h.Attestation = &pass.JWTContainer{JWT: jwt}
	}
	return h
}

// HarnessAttestation output verifies against pinned keys (ATT-2, ATT-3,
// ATT-7) and yields the attested identity (G-21, G-23).
func TestAttestationRoundTrip(t *testing.T) {
	vendor := mustKey(t, "EdDSA")
	holder := mustKey(t, "")
	tok, err := vendor.HarnessAttestation(vendorIss, harnessID, holder.PublicJSON(), 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	v := mustAttestationVerifier(t, AttestationVerifierConfig{
		Attesters: []Attester{{Issuer: vendorIss, Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{vendor.Public()}}}},
		Now:       fixed(t0.Add(time.Minute)),
	})
	got, err := v.Verify(context.Background(), harnessWith(holder, tok))
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{AgentID: harnessID, Tier: TierAttested, Issuer: vendorIss, KeyThumbprint: holder.Thumbprint()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
	if _, err := vendor.HarnessAttestation(vendorIss, harnessID, json.RawMessage(`{"kty":"oct","k":"AAAA"}`), 0, t0); err == nil {
		t.Error("attestation for a symmetric key created")
	}
}

// One row per rejection and the accepting cases (ATT-2..ATT-10, G-6, G-21).
func TestAttestationVerify(t *testing.T) {
	vendor := mustKey(t, "ES256")   // pinned directly
	remote := mustKey(t, "ES256")   // published by the JWKS server
	stranger := mustKey(t, "ES256") // trusted by no one
	holder := mustKey(t, "ES256")
	otherHolder := mustKey(t, "ES256")
	srv := newJWKSServer(t, remote.Public())
	const remoteIss = "https://remote-vendor.example"
	fetcher := httpFetcher{client: srv.Client()}
	newVerifier := func(now time.Time) *AttestationVerifier {
		return mustAttestationVerifier(t, AttestationVerifierConfig{
			Attesters: []Attester{
				{Issuer: vendorIss, Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{vendor.Public()}}},
				{Issuer: remoteIss, JWKSURL: srv.URL + "/jwks.json"},
			},
			Fetcher:    fetcher,
			Registered: map[string]string{otherHolder.Thumbprint(): "registered-bot"},
			Now:        fixed(now),
		})
	}
	kidHeader := func(k *Key) map[string]any { return map[string]any{"kid": k.KeyID(), "typ": typeAttestation} }
	good := func(t *testing.T) string { return craft(t, vendor, kidHeader(vendor), baseAttClaims(t, holder), nil) }
	tests := []struct {
		name     string
		token    func(t *testing.T) string
		harness  func(tok string) pass.HarnessInfo // harnessWith(holder, tok) when nil
		now      time.Time
		want     *Identity // accept when set
		kind     error     // ErrInvalidAttestation when nil
		reason   string
		wantHits int32
	}{
		{name: "accept: pinned key", token: good,
			want: &Identity{AgentID: harnessID, Tier: TierAttested, Issuer: vendorIss, KeyThumbprint: holder.Thumbprint()}},
		{name: "accept: pinned key, no kid, no typ", token: func(t *testing.T) string {
			return craft(t, vendor, nil, baseAttClaims(t, holder), nil)
		}, want: &Identity{AgentID: harnessID, Tier: TierAttested, Issuer: vendorIss, KeyThumbprint: holder.Thumbprint()}},
		{name: "accept: pinned JWKS URL over TLS (ATT-6)", wantHits: 1, token: func(t *testing.T) string {
			return craft(t, remote, kidHeader(remote), with(baseAttClaims(t, holder), "iss", remoteIss), nil)
		}, want: &Identity{AgentID: harnessID, Tier: TierAttested, Issuer: remoteIss, KeyThumbprint: holder.Thumbprint()}},
		{name: "accept: registered key without attestation", harness: func(string) pass.HarnessInfo {
			return harnessWith(otherHolder, "")
		}, want: &Identity{AgentID: "registered-bot", Tier: TierRegistered, KeyThumbprint: otherHolder.Thumbprint()}},
		{name: "accept: unverified with holder binding", harness: func(string) pass.HarnessInfo {
			return harnessWith(holder, "")
		}, want: &Identity{AgentID: harnessID, Tier: TierUnverified, KeyThumbprint: holder.Thumbprint()}},
		{name: "accept: unverified without holder binding", harness: func(string) pass.HarnessInfo {
			return pass.HarnessInfo{ID: harnessID}
		}, want: &Identity{AgentID: harnessID, Tier: TierUnverified}},

		{name: "untrusted issuer: no network call", kind: ErrUntrustedAttester, token: func(t *testing.T) string {
			// iss is the JWKS server itself: a naive verifier would fetch it.
			return craft(t, stranger, kidHeader(stranger), with(baseAttClaims(t, holder), "iss", srv.URL), nil)
		}},
		{name: "jku header to the JWKS server: no network call", reason: "forbidden header jku", token: func(t *testing.T) string {
			return craft(t, stranger, map[string]any{"jku": srv.URL + "/jwks.json"}, baseAttClaims(t, holder), nil)
		}},
		{name: "attestation for another key (ATT-8)", reason: "another key", token: func(t *testing.T) string {
			return craft(t, vendor, kidHeader(vendor), baseAttClaims(t, otherHolder), nil)
		}},
		{name: "sub mismatch (G-21)", reason: "sub mismatch", token: func(t *testing.T) string {
			return craft(t, vendor, kidHeader(vendor), with(baseAttClaims(t, holder), "sub", "claude-code"), nil)
		}},
		{name: "missing sub (ATT-2)", reason: "missing sub", token: func(t *testing.T) string {
			return craft(t, vendor, kidHeader(vendor), with(baseAttClaims(t, holder), "sub", nil), nil)
		}},
		{name: "missing cnf (ATT-2)", reason: "missing cnf", token: func(t *testing.T) string {
			return craft(t, vendor, kidHeader(vendor), with(baseAttClaims(t, holder), "cnf", nil), nil)
		}},
		{name: "private cnf.jwk", reason: "cnf.jwk", token: func(t *testing.T) string {
			priv := jose.JSONWebKey{Key: holder.Signer()}
			pj, _ := priv.MarshalJSON()
			var m map[string]any
			_ = json.Unmarshal(pj, &m)
			return craft(t, vendor, kidHeader(vendor), with(baseAttClaims(t, holder), "cnf", map[string]any{"jwk": m}), nil)
		}},
		{name: "missing iss", reason: "missing iss", token: func(t *testing.T) string {
			return craft(t, vendor, kidHeader(vendor), with(baseAttClaims(t, holder), "iss", nil), nil)
		}},
		{name: "expired (ATT-9)", now: t0.Add(11*time.Minute + DefaultSkew), reason: "expired", token: good},
		{name: "future iat", now: t0.Add(-2 * time.Minute), reason: "iat in the future", token: good},
		{name: "lifetime above 1 h (ATT-4)", reason: "lifetime", token: func(t *testing.T) string {
			return craft(t, vendor, kidHeader(vendor), with(baseAttClaims(t, holder), "exp", t0.Add(2*time.Hour).Unix()), nil)
		}},
		{name: "signed by the harness key (ATT-5)", reason: "bad signature", token: func(t *testing.T) string {
			return craft(t, holder, kidHeader(vendor), baseAttClaims(t, holder), nil)
		}},
		{name: "tampered payload (ATT-7)", token: func(t *testing.T) string { return tamper(good(t)) }},
		{name: "unknown kid for pinned keys", reason: "no attester key", token: func(t *testing.T) string {
			return craft(t, vendor, map[string]any{"kid": "nope"}, baseAttClaims(t, holder), nil)
		}},
		{name: "JWKS URL: unknown kid (ATT-6)", wantHits: 1, reason: "fetching attester key", token: func(t *testing.T) string {
			return craft(t, stranger, kidHeader(stranger), with(baseAttClaims(t, holder), "iss", remoteIss), nil)
		}},
		{name: "JWKS URL: missing kid", reason: "missing kid", token: func(t *testing.T) string {
			return craft(t, remote, nil, with(baseAttClaims(t, holder), "iss", remoteIss), nil)
		}},
		{name: "alg none", reason: "not allowed", token: func(t *testing.T) string {
			return craft(t, nil, map[string]any{"alg": "none"}, baseAttClaims(t, holder), nil)
		}},
		{name: "HS256 with the vendor public key bytes", reason: "not allowed", token: func(t *testing.T) string {
			return craft(t, nil, map[string]any{"alg": "HS256", "kid": vendor.KeyID()}, baseAttClaims(t, holder), vendor.PublicJSON())
		}},
		{name: "kind confusion: proof typ", reason: "wrong typ", token: func(t *testing.T) string {
			return craft(t, vendor, map[string]any{"typ": typeProof}, baseAttClaims(t, holder), nil)
		}},
		{name: "attestation without harness.cnf (G-21)", reason: "without harness.cnf", token: good,
			harness: func(tok string) pass.HarnessInfo {
				return pass.HarnessInfo{ID: harnessID, Attestation: &pass.JWTContainer{JWT: tok}}
			}},
		{name: "invalid attestation never falls back to registered", reason: "another key", token: good,
			harness: func(tok string) pass.HarnessInfo { return harnessWith(otherHolder, tok) }},
		{name: "invalid harness.cnf", reason: "harness.cnf.jwk", harness: func(string) pass.HarnessInfo {
			return pass.HarnessInfo{ID: harnessID, Cnf: &pass.Cnf{JWK: json.RawMessage(`{"kty":"oct","k":"AAAA"}`)}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.hits.Store(0)
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			var tok string
			if tt.token != nil {
				tok = tt.token(t)
			}
			h := harnessWith(holder, tok)
			if tt.harness != nil {
				h = tt.harness(tok)
			}
			got, err := newVerifier(now).Verify(context.Background(), h)
			if hits := srv.hits.Load(); hits != tt.wantHits {
				t.Errorf("JWKS server hits = %d, want %d", hits, tt.wantHits)
			}
			if tt.want != nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if diff := cmp.Diff(*tt.want, got); diff != "" {
					t.Errorf("identity (-want +got):\n%s", diff)
				}
				return
			}
			kind := tt.kind
			if kind == nil {
				kind = ErrInvalidAttestation
			}
			wantReason(t, err, kind, tt.reason)
			if got != (Identity{}) {
				t.Errorf("identity returned with an error: %+v", got)
			}
		})
	}
}

// ATT-6: an unreachable JWKS rejects the issuance.
func TestAttestationJWKSDown(t *testing.T) {
	remote, holder := mustKey(t, ""), mustKey(t, "")
	srv := newJWKSServer(t, remote.Public())
	client := srv.Client()
	url := srv.URL + "/jwks.json"
	srv.Close()
	v := mustAttestationVerifier(t, AttestationVerifierConfig{
		Attesters: []Attester{{Issuer: vendorIss, JWKSURL: url}},
		Fetcher:   httpFetcher{client: client},
		Now:       fixed(t0),
	})
	tok := craft(t, remote, map[string]any{"kid": remote.KeyID()}, baseAttClaims(t, holder), nil)
	_, err := v.Verify(context.Background(), harnessWith(holder, tok))
	wantReason(t, err, ErrInvalidAttestation, "fetching attester key")
}

func TestAttestationVerifierConfig(t *testing.T) {
	k := mustKey(t, "")
	keys := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}}
	f := httpFetcher{client: http.DefaultClient}
	tests := []struct {
		name string
		cfg  AttestationVerifierConfig
	}{
		{"empty issuer", AttestationVerifierConfig{Attesters: []Attester{{Keys: keys}}}},
		{"duplicate issuer", AttestationVerifierConfig{Attesters: []Attester{{Issuer: "a", Keys: keys}, {Issuer: "a", Keys: keys}}}},
		{"keys and URL", AttestationVerifierConfig{Fetcher: f, Attesters: []Attester{{Issuer: "a", Keys: keys, JWKSURL: "https://a.example/jwks"}}}},
		{"neither keys nor URL", AttestationVerifierConfig{Attesters: []Attester{{Issuer: "a"}}}},
		{"empty keys", AttestationVerifierConfig{Attesters: []Attester{{Issuer: "a", Keys: &jose.JSONWebKeySet{}}}}},
		{"http JWKS URL", AttestationVerifierConfig{Fetcher: f, Attesters: []Attester{{Issuer: "a", JWKSURL: "http://a.example/jwks"}}}},
		{"JWKS URL without fetcher", AttestationVerifierConfig{Attesters: []Attester{{Issuer: "a", JWKSURL: "https://a.example/jwks"}}}},
		{"empty registered id", AttestationVerifierConfig{Registered: map[string]string{k.Thumbprint(): ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewAttestationVerifier(tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) || v != nil {
				t.Errorf("NewAttestationVerifier = %v, %v; want ErrInvalidConfig", v, err)
			}
		})
	}
	// The zero value trusts nobody: an attestation is refused, a bare
	// harness is unverified.
	var zero AttestationVerifier
	if id, err := zero.Verify(context.Background(), pass.HarnessInfo{ID: harnessID}); err != nil || id.Tier != TierUnverified {
		t.Errorf("zero value, no attestation: %+v, %v", id, err)
	}
}

// ATT-5: even if the trust list pinned the holder key itself, an
// attestation signed by the Harness key is refused.
func TestAttestationSelfSigned(t *testing.T) {
	holder := mustKey(t, "")
	v := mustAttestationVerifier(t, AttestationVerifierConfig{
		Attesters: []Attester{{Issuer: vendorIss, Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{holder.Public()}}}},
		Now:       fixed(t0),
	})
	tok := craft(t, holder, map[string]any{"kid": holder.KeyID()}, baseAttClaims(t, holder), nil)
	_, err := v.Verify(context.Background(), harnessWith(holder, tok))
	wantReason(t, err, ErrInvalidAttestation, "no attester key")
}
