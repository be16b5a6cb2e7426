package dpop

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/go-jose/go-jose/v4"
)

// Fuzz targets for every parser. Keys are generated per run, so seeds are
// built at run time from real tokens plus the hostile shapes of the
// rejection tables.

func FuzzParsePublicJWK(f *testing.F) {
	for _, alg := range []string{"ES256", "ES384", "EdDSA", "RS256"} {
		f.Add([]byte(mustKey(f, alg).PublicJSON()))
	}
	f.Add([]byte(`{"kty":"oct","k":"c2VjcmV0"}`))
	f.Add([]byte(`{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}`))
	f.Add([]byte(`{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		jwk, err := ParsePublicJWK(raw)
		// The memo answers as the parse: the same error, the same key.
		again, errAgain := ParsePublicJWK(raw)
		if fmt.Sprint(err) != fmt.Sprint(errAgain) || !reflect.DeepEqual(jwk, again) {
			t.Fatalf("ParsePublicJWK(%q) = %v, %v; then %v, %v", raw, jwk, err, again, errAgain)
		}
		if err != nil {
			return
		}
		if jwk == again {
			t.Fatal("two callers share one JSONWebKey")
		}
		if !jwk.IsPublic() {
			t.Fatal("accepted a non-public key")
		}
		if _, err := Thumbprint(jwk); err != nil {
			t.Fatalf("accepted key has no thumbprint: %v", err)
		}
		if !SameKey(raw, raw) {
			t.Fatal("accepted key is not the same as itself")
		}
	})
}

func FuzzParseKey(f *testing.F) {
	k := mustKey(f, "")
	priv := jose.JSONWebKey{Key: k.Signer(), KeyID: "x"}
	pj, _ := priv.MarshalJSON()
	f.Add(pj)
	f.Add([]byte(k.PublicJSON()))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, pub, err := ParseKey(data)
		if err != nil {
			return
		}
		if !pub.IsPublic() {
			t.Fatal("ParseKey returned a non-public JWK")
		}
		if key != nil && key.Thumbprint() == "" {
			t.Fatal("key without thumbprint")
		}
	})
}

func FuzzNormalizeHTU(f *testing.F) {
	for _, s := range []string{redeemURL, "HTTPS://A.example:443/%7e?q#f", "http://[::1]:80", "https://a.example/a/../b", "https://a.example/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := normalizeHTU(s)
		if err != nil {
			return
		}
		n2, err := normalizeHTU(n)
		if err != nil || n2 != n {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", s, n, n2, err)
		}
	})
}

type fuzzKeys struct {
	holder, vendor *Key
}

func newFuzzKeys(f *testing.F) fuzzKeys {
	return fuzzKeys{holder: mustKey(f, ""), vendor: mustKey(f, "")}
}

func addTokenSeeds(f *testing.F, k *Key, header, claims map[string]any) {
	f.Add(craft(f, k, header, claims, nil))
	f.Add(craft(f, nil, with(header, "alg", "none"), claims, nil))
	f.Add(craft(f, nil, with(header, "alg", "HS256"), claims, k.PublicJSON()))
	f.Add(craft(f, k, with(header, "jku", "https://evil.example"), claims, nil))
	f.Add("")
	f.Add("a.b.c")
}

func FuzzProofVerify(f *testing.F) {
	fk := newFuzzKeys(f)
	tok, err := fk.holder.HarnessProof(ProofParams{HarnessID: harnessID, Audience: svcOrigin,
		Method: "POST", URL: redeemURL, AgentPass: passValue, Now: t0})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	addTokenSeeds(f, fk.holder, proofHeader, baseProofClaims())
	f.Fuzz(func(t *testing.T, tok string) {
		v := newProofVerifier(t, t0)
		req := proofReq
		req.RequireBinding = true
		c, err := v.Verify(context.Background(), tok, fk.holder.PublicJSON(), req)
		if err != nil {
			return
		}
		if c.Issuer != harnessID || c.JTI == "" || c.APH != PassHash(passValue) {
			t.Fatalf("accepted proof with claims %+v", c)
		}
	})
}

func FuzzVerifyTaskAttestation(f *testing.F) {
	fk := newFuzzKeys(f)
	tok, err := fk.holder.TaskAttestation(harnessID, taskID, taskDesc, 0, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	addTokenSeeds(f, fk.holder, taskHeader, baseTaskClaims())
	if data, err := os.ReadFile("testdata/appendix-b-issuance-request.json"); err == nil {
		var req pass.IssuanceRequest
		if json.Unmarshal(data, &req) == nil && req.Task.Attestation != nil {
			f.Add(req.Task.Attestation.JWT)
		}
	}
	f.Fuzz(func(t *testing.T, tok string) {
		_ = VerifyTaskAttestation(tok, fk.holder.PublicJSON(), harnessID, taskID, taskDesc, t0, 0)
	})
}

func FuzzAttestationVerify(f *testing.F) {
	fk := newFuzzKeys(f)
	tok, err := fk.vendor.HarnessAttestation(vendorIss, harnessID, fk.holder.PublicJSON(), 0, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	addTokenSeeds(f, fk.vendor, map[string]any{"kid": fk.vendor.KeyID()}, baseAttClaims(f, fk.holder))
	v := mustAttestationVerifier(f, AttestationVerifierConfig{
		Attesters: []Attester{{Issuer: vendorIss, Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{fk.vendor.Public()}}}},
		Now:       fixed(t0),
	})
	f.Fuzz(func(t *testing.T, tok string) {
		h := harnessWith(fk.holder, "")
		h.Attestation = &pass.JWTContainer{JWT: tok}
		id, err := v.Verify(context.Background(), h)
		if err != nil {
			return
		}
		if id.Tier != TierAttested || id.AgentID != harnessID || id.Issuer != vendorIss {
			t.Fatalf("accepted attestation with identity %+v", id)
		}
	})
}

func FuzzDPoPVerify(f *testing.F) {
	fk := newFuzzKeys(f)
	tok, err := fk.holder.DPoPProof("GET", apiURL, accessToken, "", t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	addTokenSeeds(f, fk.holder, map[string]any{"typ": typeDPoP, "jwk": jwkMap(f, fk.holder)}, baseDPoPClaims())
	f.Fuzz(func(t *testing.T, tok string) {
		v := newDPoPVerifier(t, t0.Add(time.Second))
		c, err := v.Verify(context.Background(), tok, "GET", apiURL, accessToken, fk.holder.Thumbprint())
		if err != nil {
			return
		}
		if c.JKT != fk.holder.Thumbprint() || c.ATH != tokenHash(accessToken) {
			t.Fatalf("accepted DPoP proof with claims %+v", c)
		}
	})
}
