package main

import (
	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// compiler is the devnet Authorities' scope compiler, so that every
// extension runs at once: a task that reviews the to-do list and then
// changes it gets a proposal (shown while the request is pending) with a
// two-stage plan, reading first and writing only after a person lets the
// mission move on. Other tasks get no proposal and behave as before.
func compiler() (*authority.Templates, error) {
	return authority.NewTemplates("devnet-1", []authority.Template{{
		ID: "todo-review", Version: "1",
		Regexp: `(?i)\btodos?\b`,
		Any:    []string{"review", "tidy"},
		Scopes: []authority.ScopeSelector{
			{Name: "todos:read", Why: "the review reads the list"},
			{Name: "todos:write", Why: "the missing items are added after the review"},
		},
		Exclude: []authority.ScopeSelector{{Name: "todos:delete", Why: "no step of the task removes items"}},
		Stages: []pass.Stage{
			{Name: "review", Scope: pass.Scope{"todos:read"}, Gate: pass.GateAuto},
			{Name: "update", Scope: pass.Scope{"todos:read", "todos:write"}, Gate: pass.GatePolicy},
		},
	}})
}
