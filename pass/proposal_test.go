package pass_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// The compile extension's request members: a requested scope of scope
// tokens and a task class; both optional, both bounded.
func TestIssuanceScopeAndClass(t *testing.T) {
	many := make(pass.Scope, 257)
	for i := range many {
		many[i] = "s"
	}
	for _, tt := range []struct {
		name  string
		scope pass.Scope
		class string
		field string // "" when valid
	}{
		{"none", nil, "", ""},
		{"scope and class", pass.Scope{"tickets:read", "*"}, "support-triage", ""},
		{"empty value", pass.Scope{""}, "", "scope"},
		{"space in value", pass.Scope{"a b"}, "", "scope"},
		{"too many", many, "", "scope"},
		{"too long", pass.Scope{strings.Repeat("a", 257)}, "", "scope"},
		{"class with a space", nil, "support triage", "task.class"},
		{"class too long", nil, strings.Repeat("c", 65), "task.class"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := validIssuance()
			r.Scope, r.Task.Class = tt.scope, tt.class
			err := r.Validate()
			var fe *pass.FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
				t.Fatalf("Validate = %v, want an error about %s", err, tt.field)
			}
		})
	}
}

// A pending status with a proposal still decodes as a v0.1 status, and
// the proposal's members keep their wire names.
func TestStatusProposalWire(t *testing.T) {
	body := `{"id":"req_1","status":"pending","proposal":{"outcome":"proposed","scope":["tickets:read"],
		"rationale":[{"scope":"tickets:read","basis":"model","why":"reads","untrusted":true}],
		"diff":{"over":["tickets:delete"]},"compiler":{"id":"m","version":"1"}}}`
	var st pass.IssuanceStatus
	if err := pass.Decode([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	p := st.Proposal
	if p == nil || !p.Rationale[0].Untrusted || p.Diff.Over[0] != "tickets:delete" || p.Compiler.ID != "m" {
		t.Fatalf("decoded proposal %+v", p)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, member := range []string{`"outcome":"proposed"`, `"untrusted":true`, `"over":["tickets:delete"]`} {
		if !strings.Contains(string(out), member) {
			t.Errorf("encoding %s lacks %s", out, member)
		}
	}
}
