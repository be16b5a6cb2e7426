package pass_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

const delegationSeed = `{"parent":{"mission_id":"msn_4vQ9sT2kP8xL1mN6"},"type":"bearer_token",` +
	`"harness":{"id":"claude-code/sub-3","cnf":{"jwk":{"kty":"EC","crv":"P-256","x":"a","y":"b"}}},` +
	`"task":{"id":"task_9a8b.3","description":"Reply to ticket 4411","attestation":{"jwt":"a.b.c"}},` +
	`"scope":["tickets:read","tickets:comment"],"expires_in":900,"delegation":{"max_depth":0},"harness_proof":{"jwt":"a.b.c"}}`

// TestDelegationRequestValidate covers the shape rules of a delegate body
// (mission.md §4.2 and §9 item 3).
func TestDelegationRequestValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(m map[string]any)
		field string // "" means valid
	}{
		{"valid", func(map[string]any) {}, ""},
		{"no parent", func(m map[string]any) { delete(m, "parent") }, "parent.mission_id"},
		{"parent not a mission id", func(m map[string]any) { m["parent"] = map[string]any{"mission_id": "authz_1"} }, "parent.mission_id"},
		{"bad type", func(m map[string]any) { m["type"] = "cookie" }, "type"},
		{"harness id without suffix", func(m map[string]any) { h(m)["id"] = "claude-code" }, "harness.id"},
		{"harness id suffix upper case", func(m map[string]any) { h(m)["id"] = "claude-code/Sub" }, "harness.id"},
		{"harness id suffix too long", func(m map[string]any) { h(m)["id"] = "p/" + strings.Repeat("a", 33) }, "harness.id"},
		{"harness id empty parent", func(m map[string]any) { h(m)["id"] = "/sub" }, "harness.id"},
		{"no cnf", func(m map[string]any) { delete(h(m), "cnf") }, "harness.cnf"},
		{"private key as cnf", func(m map[string]any) {
			h(m)["cnf"] = map[string]any{"jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "secret"}}
		}, "harness.cnf.jwk"},
		{"no task attestation", func(m map[string]any) { delete(m["task"].(map[string]any), "attestation") }, "task.attestation"},
		{"empty scope", func(m map[string]any) { m["scope"] = []string{} }, "scope"},
		{"wildcard scope is the Authority's refusal", func(m map[string]any) { m["scope"] = []string{"*"} }, ""},
		{"negative expiry", func(m map[string]any) { m["expires_in"] = -1 }, "expires_in"},
		{"depth out of range", func(m map[string]any) { m["delegation"] = map[string]any{"max_depth": 99} }, "delegation.max_depth"},
		{"no harness proof", func(m map[string]any) { delete(m, "harness_proof") }, "harness_proof.jwt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal([]byte(delegationSeed), &m); err != nil {
				t.Fatal(err)
			}
			tt.edit(m)
			b, _ := json.Marshal(m)
			var r pass.DelegationRequest
			err := pass.Decode(b, &r)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			var fe *pass.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Decode error = %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
}

func h(m map[string]any) map[string]any { return m["harness"].(map[string]any) }

func TestChildSuffix(t *testing.T) {
	for id, want := range map[string]string{"a/b": "b", "a/b/c-1_x": "c-1_x", "a/": "", "ab": "", "a/B": ""} {
		got, ok := pass.ChildSuffix(id)
		if got != want || ok != (want != "") {
			t.Errorf("ChildSuffix(%q) = %q, %v; want %q", id, got, ok, want)
		}
	}
	if got := pass.ChildKeyBinding("msn_1", "tp"); got != "msn_1.tp" {
		t.Errorf("ChildKeyBinding = %q", got)
	}
}

func TestDelegationCodes(t *testing.T) {
	for code, status := range map[pass.Code]int{
		pass.CodeDelegationNotPermitted: http.StatusForbidden, pass.CodeNotAttenuated: http.StatusForbidden,
		pass.CodeDepthExceeded: http.StatusForbidden, pass.CodeFanoutExceeded: http.StatusTooManyRequests,
		pass.CodeHolderKeyReused: http.StatusUnprocessableEntity,
	} {
		if got := code.Status(); got != status {
			t.Errorf("%s.Status() = %d, want %d", code, got, status)
		}
	}
	if !errors.Is(pass.Fail(pass.CodeNotAttenuated, "x"), pass.ErrScope) {
		t.Error("not_attenuated does not match pass.ErrScope")
	}
}

func FuzzDelegationRequest(f *testing.F) {
	fuzzDocument[pass.DelegationRequest](f, delegationSeed,
		`{"parent":{"mission_id":"msn_x"},"type":"browser_session","harness":{"id":"h/a","cnf":{"jwk":{"kty":"OKP","crv":"Ed25519","x":"a"}}},"task":{"id":"t","description":"d","attestation":{"jwt":"a.b.c"}},"scope":["x"],"harness_proof":{"jwt":"a.b.c"}}`)
}
