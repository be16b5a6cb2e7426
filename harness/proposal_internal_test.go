package harness

import (
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// A Harness keeps of a proposal only what concerns the scopes it asked
// for, with bounded, printable reasons, whatever an Authority sends.
func TestKeepProposalHostile(t *testing.T) {
	long := strings.Repeat("é", 600) + "\x1b[2J"
	in := &pass.ScopeProposal{
		Outcome: pass.ProposalProposed,
		Scope:   pass.Scope{"tickets:read", "admin", "tickets:read"},
		Rationale: []pass.ScopeRationale{
			{Scope: "tickets:read", Basis: "template", Why: long},
			{Scope: "admin", Basis: "model", Why: "not requested"},
		},
		Excluded: []pass.ScopeRationale{{Scope: "billing:read", Why: "not requested"}},
		Diff:     pass.ScopeDiff{Over: pass.Scope{"tickets:delete", "secrets:read"}, Under: pass.Scope{"admin"}},
		Compiler: &pass.CompilerRef{ID: "t\x07", Version: "1"},
	}
	got := keepProposal(in, pass.Scope{"tickets:read", "tickets:delete", "*"})
	if got == nil {
		t.Fatal("nothing kept")
	}
	if !got.Scope.Has("tickets:read") || len(got.Scope) != 1 {
		t.Errorf("Scope = %v, want only the requested tickets:read", got.Scope)
	}
	if len(got.Rationale) != 1 || len(got.Rationale[0].Why) > maxProposalWhy || strings.ContainsAny(got.Rationale[0].Why, "\x1b") {
		t.Errorf("Rationale = %+v, want one bounded printable reason", got.Rationale)
	}
	if len(got.Excluded) != 0 || len(got.Diff.Under) != 0 || len(got.Diff.Over) != 1 || got.Diff.Over[0] != "tickets:delete" {
		t.Errorf("kept %+v, want nothing about unrequested scopes", got)
	}
	if strings.ContainsRune(got.Compiler.ID, '\x07') {
		t.Errorf("compiler id %q kept a control character", got.Compiler.ID)
	}
	for _, bad := range []*pass.ScopeProposal{nil, {Outcome: "granted"}} {
		if keepProposal(bad, pass.Scope{"a"}) != nil {
			t.Errorf("keepProposal(%+v) kept something", bad)
		}
	}
}
