package jwtcheck_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

// realTokens returns one token of every kind, made by the module's own
// signers, with the key that verifies each.
func realTokens(f *testing.F) []string {
	f.Helper()
	holder, err := dpop.GenerateKey("")
	if err != nil {
		f.Fatal(err)
	}
	vendor, err := dpop.GenerateKey("EdDSA")
	if err != nil {
		f.Fatal(err)
	}
	var out []string
	add := func(s string, err error) {
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, s)
	}
	add(holder.HarnessProof(dpop.ProofParams{HarnessID: "h1", Audience: "https://svc.example", Method: "POST",
		URL: "https://svc.example/redeem", AgentPass: "ap_x", Now: t0}))
	add(holder.TaskAttestation("h1", "task-1", "do it", 0, t0))
	add(vendor.HarnessAttestation("https://vendor.example", "h1", holder.PublicJSON(), 0, t0))
	add(holder.DPoPProof("GET", "https://svc.example/api", "at_1", "n-1", t0))
	add(assertion.Sign(holder, "https://svc.example", "https://ap.example", 0, t0))
	add(jwtcheck.SignKey(holder, jwtcheck.TypeSecurityEvent, map[string]any{
		"iss": "https://ap.example", "aud": "https://svc.example", "iat": t0.Unix(),
		"events": map[string]any{"https://schemas.openid.net/secevent/risc/event-type/sessions-revoked": map[string]any{}},
	}))
	return out
}

// FuzzParse feeds whole tokens to every profile. Whatever the input,
// Parse must not panic, and a token it accepts must satisfy the header
// rules it claims to enforce.
func FuzzParse(f *testing.F) {
	for _, s := range realTokens(f) {
		f.Add(s)
		parts := strings.Split(s, ".")
		f.Add(parts[0] + "." + parts[1] + ".")             // no signature
		f.Add(parts[0] + "=." + parts[1] + "." + parts[2]) // padding
	}
	f.Add("e30.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range profiles {
			tok, err := jwtcheck.Parse(raw, p)
			if err != nil {
				continue
			}
			checkAccepted(t, p, raw, tok)
			_ = jwtcheck.CheckTimes(tok, t0, jwtcheck.TimeRules{Skew: time.Minute, MaxLifetime: time.Hour, MaxAge: time.Hour})
		}
	})
}

// FuzzHeaderClaims builds validly signed tokens from arbitrary header and
// claims JSON, so the fuzzer explores the JSON rules directly instead of
// fighting base64 and signatures.
func FuzzHeaderClaims(f *testing.F) {
	k := newTestKey(f)
	for _, s := range realTokens(f) {
		parts := strings.Split(s, ".")
		h, _ := decodeB64(parts[0])
		c, _ := decodeB64(parts[1])
		f.Add(h, c)
	}
	f.Add([]byte(`{"alg":"ES256","crit":["exp"]}`), []byte(`{"exp":1e400}`))
	f.Add([]byte(`{"alg":"ES256","typ":"JWT","kid":null}`), []byte(`{"aud":["a","b"],"iat":-1,"jti":""}`))
	f.Add([]byte(`{"alg":"ES256","ALG":"none","\u0061lg":"ES384"}`), []byte(`{"jti":"a","JTI":"b","cnf":{"jkt":"x","jkt":"y"}}`))
	f.Fuzz(func(t *testing.T, header, claims []byte) {
		raw := k.signRaw(t, header, claims)
		for _, p := range profiles {
			tok, err := jwtcheck.Parse(raw, p)
			if err != nil {
				continue
			}
			checkAccepted(t, p, raw, tok)
			if tok.Alg == "ES256" && !p.EmbeddedJWK {
				if err := tok.Verify(&k.jwk); err != nil && tok.Kid == k.jwk.KeyID {
					// The signature is genuine; only key rules may refuse it.
					if !strings.Contains(err.Error(), "alg") {
						t.Fatalf("genuine signature refused: %v", err)
					}
				}
			}
			_ = jwtcheck.CheckTimes(tok, t0, jwtcheck.TimeRules{Skew: time.Minute, MaxLifetime: time.Hour})
		}
	})
}

// checkAccepted asserts the invariants of a token Parse accepted.
func checkAccepted(t *testing.T, p *jwtcheck.Profile, raw string, tok *jwtcheck.Token) {
	t.Helper()
	if len(raw) > p.MaxBytes || strings.Count(raw, ".") != 2 {
		t.Fatalf("%s: accepted a token of %d bytes with %d dots", p.Name, len(raw), strings.Count(raw, "."))
	}
	if !jwtcheck.Allowed(tok.Alg) {
		t.Fatalf("%s: accepted alg %q", p.Name, tok.Alg)
	}
	if len(tok.Claims.ID) > jwtcheck.MaxJTIBytes {
		t.Fatalf("%s: accepted a jti of %d bytes", p.Name, len(tok.Claims.ID))
	}
	typ := tok.Typ
	if p == jwtcheck.SecurityEvent && len(typ) > 12 && strings.EqualFold(typ[:12], "application/") {
		typ = typ[12:]
	}
	typOK := strings.EqualFold(typ, p.Typ) || !p.RequireTyp && (tok.Typ == "" || strings.EqualFold(tok.Typ, "JWT"))
	if !typOK {
		t.Fatalf("%s: accepted typ %q", p.Name, tok.Typ)
	}
	hb, err := decodeB64(raw[:strings.IndexByte(raw, '.')])
	if err != nil {
		t.Fatalf("%s: accepted a header that does not decode: %v", p.Name, err)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(hb, &members); err != nil {
		t.Fatalf("%s: accepted a header that is not an object", p.Name)
	}
	for _, name := range []string{"jku", "x5u", "x5c", "crit", "b64", "enc", "zip"} {
		if _, ok := members[name]; ok {
			t.Fatalf("%s: accepted header %s", p.Name, name)
		}
	}
	if _, ok := members["jwk"]; ok != p.EmbeddedJWK {
		t.Fatalf("%s: jwk header present = %v", p.Name, ok)
	}
	if tok.Verified() {
		t.Fatalf("%s: Parse marked the token verified", p.Name)
	}
}
