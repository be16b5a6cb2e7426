package replicatest

import (
	"encoding/json"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
)

// TestEdDSARoles: a Service and an Authority that sign with Ed25519 keys
// interoperate end to end (validation and a redemption with a holder
// proof), and every pass is still single-use (#19 item 5).
func TestEdDSARoles(t *testing.T) {
	d := deploy(t, options{alg: "EdDSA"})
	var jwks struct {
		Keys []struct{ Kty, Crv, Alg string } `json:"keys"`
	}
	if err := json.Unmarshal(mustJSON(t, d.serviceKeys.JWKS()), &jwks); err != nil {
		t.Fatal(err)
	}
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kty != "OKP" || jwks.Keys[0].Crv != "Ed25519" {
		t.Fatalf("Service JWKS = %+v, want one Ed25519 key", jwks.Keys)
	}
	key, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	values := d.storePasses(t, 2, key)
	if err := d.validate(t.Context(), values[0]); err != nil {
		t.Fatalf("validate with an EdDSA Service assertion: %v", err)
	}
	if err := d.validate(t.Context(), values[0]); err == nil {
		t.Fatal("a consumed pass validated again")
	}
	reqs := d.redemptions(t, key, values[1:])
	if _, err := d.redeem(t.Context(), -1, reqs[0]); err != nil {
		t.Fatalf("redeem with EdDSA roles: %v", err)
	}
	if _, err := d.redeem(t.Context(), -1, reqs[0]); err == nil {
		t.Fatal("a redemption was replayed")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
