package secevent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/jwtcheck"
	"github.com/agentpass-go/agentpass/internal/secevent"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	authority = "https://idp.corp.example"
	service   = "https://api.example.com"
	jwksURL   = "https://idp.corp.example/jwks"
)

// finder serves one key set, as the discovery client would.
type finder struct{ ks *dpop.KeySet }

func (f finder) LookupKey(_ context.Context, url, kid string) (*jose.JSONWebKey, error) {
	if url != jwksURL {
		return nil, errors.New("unexpected JWKS URL " + url)
	}
	k, ok := f.ks.PublicKey(kid)
	if !ok {
		return nil, discovery.ErrKeyNotFound
	}
	return &k, nil
}

func revocation() secevent.SET {
	return secevent.SET{
		Issuer: authority, Audience: service, IssuedAt: t0, Txn: "msn_4vQ9:9", Subject: "authz_7HkQ2",
		Event: secevent.Event{
			Type: secevent.SessionRevoked, Timestamp: t0.Unix(), InitiatingEntity: secevent.InitiatorAdmin,
			ReasonAdmin: map[string]string{"en": "contractor offboarded"},
			Mission:     &secevent.Mission{ID: "msn_4vQ9", Version: 7, State: "revoked", PriorState: "active", Cause: "operator"},
		},
	}
}

func sign(t testing.TB, k *dpop.Key, s secevent.SET) string {
	t.Helper()
	raw, _, err := secevent.Sign(k, s)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func decodePart(t testing.TB, raw string, i int) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// E9: the SET we sign has the profile's shape on the wire, and reads back
// as what was signed.
func TestSignShape(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	want := revocation()
	raw, jti, err := secevent.Sign(ks.Current(), want)
	if err != nil {
		t.Fatal(err)
	}
	h := decodePart(t, raw, 0)
	if h["typ"] != "secevent+jwt" || h["kid"] != ks.Current().KeyID() || h["alg"] != "ES256" {
		t.Errorf("header = %v", h)
	}
	c := decodePart(t, raw, 1)
	for _, absent := range []string{"sub", "exp", "nbf"} {
		if _, ok := c[absent]; ok {
			t.Errorf("claim %s present", absent)
		}
	}
	if diff := cmp.Diff(map[string]any{"format": "opaque", "id": "authz_7HkQ2"}, c["sub_id"]); diff != "" {
		t.Errorf("sub_id (-want +got):\n%s", diff)
	}
	if c["jti"] != jti || len(jti) != 22 || c["txn"] != "msn_4vQ9:9" || c["aud"] != service {
		t.Errorf("claims = %v", c)
	}
	if ev := c["events"].(map[string]any); len(ev) != 1 || ev[secevent.SessionRevoked] == nil {
		t.Errorf("events = %v", ev)
	}

	tok, err := secevent.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tok.Verify(context.Background(), finder{ks}, jwksURL, authority, service)
	if err != nil {
		t.Fatal(err)
	}
	want.JTI = jti
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Errorf("verified SET (-want +got):\n%s", diff)
	}
	// The same jti is kept when the caller chooses it (a retry re-signs
	// nothing, but an enqueue may pick its id first).
	_, jti2, _ := secevent.Sign(ks.Current(), secevent.SET{Issuer: authority, Audience: service, IssuedAt: t0, Subject: "a", JTI: "set_1", Event: secevent.Event{Type: secevent.MissionSuspended}})
	if jti2 != "set_1" {
		t.Errorf("jti = %q, want set_1", jti2)
	}
}

// token-claims-change carries its scope as one space-delimited string.
func TestTokenClaimsChangeScope(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	s := revocation()
	s.Event = secevent.Event{Type: secevent.TokenClaimsChange, Timestamp: t0.Unix(), Claims: &secevent.Claims{Scope: "tickets:read tickets:list"}}
	raw := sign(t, ks.Current(), s)
	ev := decodePart(t, raw, 1)["events"].(map[string]any)[secevent.TokenClaimsChange].(map[string]any)
	if diff := cmp.Diff(map[string]any{"scope": "tickets:read tickets:list"}, ev["claims"]); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

// Every refusal maps to its RFC 8935 code, and nothing but a genuine SET
// for this Service from the subject's Authority verifies.
func TestVerifyRefusals(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	other, _ := dpop.GenerateKeySet()
	good := sign(t, ks.Current(), revocation())
	tests := []struct {
		name      string
		raw       string
		iss, aud  string
		wantCode  string
		wantParse bool
	}{
		{"unknown key", sign(t, other.Current(), revocation()), authority, service, "invalid_key", false},
		{"other Authority", good, "https://other.example", service, "invalid_issuer", false},
		{"other Service", good, authority, "https://evil.example", "invalid_audience", false},
		{"bad signature", good[:len(good)-4] + "AAAA", authority, service, "invalid_key", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := secevent.Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tok.Verify(context.Background(), finder{ks}, jwksURL, tt.iss, tt.aud)
			if got := secevent.Code(err); got != tt.wantCode {
				t.Errorf("code = %q (%v), want %q", got, err, tt.wantCode)
			}
		})
	}
	tok, _ := secevent.Parse(good)
	if _, err := tok.Verify(context.Background(), finder{ks}, jwksURL, "", service); err == nil || secevent.Code(err) != "" {
		t.Errorf("empty issuer expectation: %v", err)
	}
	// A key fetch that fails is no verdict on the SET: the sender retries.
	_, err := tok.Verify(context.Background(), finder{ks}, "https://elsewhere.example/jwks", authority, service)
	if err == nil || secevent.Code(err) != "" {
		t.Errorf("failed fetch: code %q (%v), want none", secevent.Code(err), err)
	}
}

type rawKey struct{ priv *ecdsa.PrivateKey }

func newRawKey(t testing.TB) rawKey {
	p, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rawKey{p}
}

func (k rawKey) sign(t testing.TB, header, claims any) string {
	t.Helper()
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	d := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func goodClaims(changes map[string]any) map[string]any {
	c := map[string]any{
		"iss": authority, "aud": service, "iat": t0.Unix(), "jti": "set_1", "txn": "msn_1:2",
		"sub_id": map[string]any{"format": "opaque", "id": "authz_1"},
		"events": map[string]any{secevent.SessionRevoked: map[string]any{"event_timestamp": t0.Unix()}},
	}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// Parse refuses, as invalid_request, every SET the profile excludes.
func TestParseRefusals(t *testing.T) {
	k := newRawKey(t)
	hdr := func(extra map[string]any) map[string]any {
		h := map[string]any{"alg": "ES256", "typ": "secevent+jwt", "kid": "k1"}
		for n, v := range extra {
			h[n] = v
		}
		return h
	}
	two := map[string]any{secevent.SessionRevoked: map[string]any{}, secevent.MissionSuspended: map[string]any{}}
	tests := []struct {
		name   string
		header map[string]any
		claims map[string]any
	}{
		{"sub", hdr(nil), goodClaims(map[string]any{"sub": "x"})},
		{"exp", hdr(nil), goodClaims(map[string]any{"exp": t0.Add(time.Hour).Unix()})},
		{"no jti", hdr(nil), goodClaims(map[string]any{"jti": nil})},
		{"long jti", hdr(nil), goodClaims(map[string]any{"jti": strings.Repeat("j", 257)})},
		{"two events", hdr(nil), goodClaims(map[string]any{"events": two})},
		{"no event", hdr(nil), goodClaims(map[string]any{"events": map[string]any{}})},
		{"events an array", hdr(nil), goodClaims(map[string]any{"events": []any{1}})},
		{"event not an object", hdr(nil), goodClaims(map[string]any{"events": map[string]any{secevent.SessionRevoked: "x"}})},
		{"sub_id email", hdr(nil), goodClaims(map[string]any{"sub_id": map[string]any{"format": "email", "email": "a@b.example"}})},
		{"no sub_id", hdr(nil), goodClaims(map[string]any{"sub_id": nil})},
		{"no iss", hdr(nil), goodClaims(map[string]any{"iss": nil})},
		{"no aud", hdr(nil), goodClaims(map[string]any{"aud": nil})},
		{"no iat", hdr(nil), goodClaims(map[string]any{"iat": nil})},
		{"jku", hdr(map[string]any{"jku": "https://evil.example/jwks"}), goodClaims(nil)},
		{"x5u", hdr(map[string]any{"x5u": "https://evil.example/cert"}), goodClaims(nil)},
		{"jwk", hdr(map[string]any{"jwk": map[string]any{"kty": "EC"}}), goodClaims(nil)},
		{"alg none", hdr(map[string]any{"alg": "none"}), goodClaims(nil)},
		{"alg HS256", hdr(map[string]any{"alg": "HS256"}), goodClaims(nil)},
		{"typ JWT", hdr(map[string]any{"typ": "JWT"}), goodClaims(nil)},
		{"typ assertion", hdr(map[string]any{"typ": jwtcheck.TypeAssertion}), goodClaims(nil)},
		{"negative version", hdr(nil), goodClaims(map[string]any{"events": map[string]any{secevent.SessionRevoked: map[string]any{"agentpass_mission": map[string]any{"id": "m", "version": -1}}}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := secevent.Parse(k.sign(t, tt.header, tt.claims))
			if secevent.Code(err) != "invalid_request" {
				t.Fatalf("err = %v, want invalid_request", err)
			}
		})
	}
	// The control: the same builder makes SETs Parse accepts, also with
	// the media-type form of typ.
	for _, typ := range []string{"secevent+jwt", "application/secevent+jwt", "SECEVENT+JWT"} {
		tok, err := secevent.Parse(k.sign(t, hdr(map[string]any{"typ": typ}), goodClaims(nil)))
		if err != nil {
			t.Fatalf("typ %q: %v", typ, err)
		}
		if tok.Subject() != "authz_1" || tok.JTI() != "set_1" || tok.Issuer() != authority {
			t.Errorf("token = %q %q %q", tok.Subject(), tok.JTI(), tok.Issuer())
		}
	}
}

// V7: a SET is refused where an assertion is expected, and an assertion or
// a harness proof is refused where a SET is.
func TestNoKindConfusion(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	set := sign(t, ks.Current(), revocation())
	if _, err := assertion.Parse(set); err == nil {
		t.Error("assertion.Parse accepted a SET")
	}
	asrt, err := assertion.Sign(ks.Current(), service, authority, 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := ks.Current().HarnessProof(dpop.ProofParams{HarnessID: "h", Audience: service, AgentPass: "ap_1", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]string{"assertion": asrt, "proof": proof} {
		if _, err := secevent.Parse(raw); secevent.Code(err) != "invalid_request" {
			t.Errorf("%s parsed as a SET: %v", name, err)
		}
	}
}

// Pushed SETs are accepted from iat - 60 s to iat + 30 min: longer than the
// transmitter's 15-minute retry horizon.
func TestCheckPushAge(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	tok, err := secevent.Parse(sign(t, ks.Current(), revocation()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		now time.Time
		ok  bool
	}{
		{t0, true}, {t0.Add(15 * time.Minute), true}, {t0.Add(30 * time.Minute), true},
		{t0.Add(32 * time.Minute), false}, {t0.Add(-59 * time.Second), true}, {t0.Add(-2 * time.Minute), false},
	} {
		err := tok.CheckPushAge(tt.now)
		if (err == nil) != tt.ok || err != nil && secevent.Code(err) != "invalid_request" {
			t.Errorf("at %v: %v, want ok=%v", tt.now.Sub(t0), err, tt.ok)
		}
	}
}

func TestSignRefuses(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	for name, s := range map[string]secevent.SET{
		"no subject":  {Issuer: authority, Audience: service, IssuedAt: t0, Event: secevent.Event{Type: secevent.SessionRevoked}},
		"no type":     {Issuer: authority, Audience: service, IssuedAt: t0, Subject: "a"},
		"no audience": {Issuer: authority, IssuedAt: t0, Subject: "a", Event: secevent.Event{Type: secevent.SessionRevoked}},
		"no iat":      {Issuer: authority, Audience: service, Subject: "a", Event: secevent.Event{Type: secevent.SessionRevoked}},
	} {
		if _, _, err := secevent.Sign(ks.Current(), s); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	if _, _, err := secevent.Sign(nil, revocation()); err == nil {
		t.Error("nil key: signed")
	}
}

// FuzzParse: whatever the input, Parse does not panic, and a SET it
// accepts has exactly the shape the profile requires.
func FuzzParse(f *testing.F) {
	ks, _ := dpop.GenerateKeySet()
	k := newRawKey(f)
	seeds := []string{sign(f, ks.Current(), revocation())}
	s := revocation()
	s.Event = secevent.Event{Type: secevent.TokenClaimsChange, Claims: &secevent.Claims{Scope: "a b"}}
	seeds = append(seeds, sign(f, ks.Current(), s))
	seeds = append(seeds, k.sign(f, map[string]any{"alg": "ES256", "typ": "application/secevent+jwt", "kid": "k"}, goodClaims(nil)))
	seeds = append(seeds, k.sign(f, map[string]any{"alg": "ES256", "typ": "secevent+jwt", "kid": "k"}, goodClaims(map[string]any{"sub": "x"})))
	for _, raw := range seeds {
		f.Add(raw)
		parts := strings.Split(raw, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
	}
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := secevent.Parse(raw)
		if err != nil {
			if secevent.Code(err) != "invalid_request" {
				t.Fatalf("Parse error without the invalid_request class: %v", err)
			}
			return
		}
		if tok.Subject() == "" || tok.JTI() == "" || tok.Issuer() == "" {
			t.Fatalf("accepted a SET without subject, jti or iss")
		}
		c := decodePart(t, raw, 1)
		if _, ok := c["sub"]; ok {
			t.Fatal("accepted sub")
		}
		if _, ok := c["exp"]; ok {
			t.Fatal("accepted exp")
		}
		if ev, _ := c["events"].(map[string]any); len(ev) != 1 {
			t.Fatalf("accepted %d events", len(ev))
		}
		_, _ = tok.VerifyWith(nil, authority, service)
	})
}
