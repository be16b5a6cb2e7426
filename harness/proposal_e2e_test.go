package harness_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
)

// proposalEnv is a network whose Authorities propose tickets:read for
// triage tasks and leave every request to a person.
func proposalEnv(t *testing.T) *e2e.Env {
	t.Helper()
	tp, err := authority.NewTemplates("t1", []authority.Template{{ID: "triage", Version: "2", Any: []string{"triage"},
		Scopes:  []authority.ScopeSelector{{Name: "tickets:read", Why: "triage reads tickets"}},
		Exclude: []authority.ScopeSelector{{Name: "tickets:write", Why: "triage changes nothing"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return e2e.New(t, e2e.Options{Approver: authority.Manual{}, Authority: func(c *authority.Config) { c.Compiler = tp }})
}

// Issue #21: the Authority's proposal is on the Pending that Start returns,
// read with the holder proof, about the requested scopes only; it survives
// a restart with the persisted Pending and ends up on the Grant.
func TestE2EPendingProposal(t *testing.T) {
	e := proposalEnv(t)
	var mu sync.Mutex
	var events []harness.Progress
	c := newClient(t, e, func(cfg *harness.Config) {
		cfg.Progress = func(p harness.Progress) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, p)
		}
	})
	ctx := context.Background()
	req := task(e2e.EnterpriseUser)
	req.Scope = pass.Scope{"tickets:read", "tickets:write"}
	p, err := c.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	pr := p.Proposal
	if pr == nil || pr.Outcome != pass.ProposalProposed || !pr.Scope.Has("tickets:read") || len(pr.Scope) != 1 ||
		len(pr.Diff.Over) != 1 || pr.Diff.Over[0] != "tickets:write" || len(pr.Excluded) != 1 || pr.Excluded[0].Why != "triage changes nothing" {
		t.Fatalf("Pending.Proposal = %+v, want tickets:read proposed and tickets:write over, with its reason", pr)
	}
	mu.Lock()
	var got *pass.ScopeProposal
	for _, ev := range events {
		if ev.Event == harness.EventProposal {
			got = ev.Proposal
		}
	}
	mu.Unlock()
	if got == nil {
		t.Error("no EventProposal reported")
	}
	saved, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var resumed harness.Pending
	if err := json.Unmarshal(saved, &resumed); err != nil {
		t.Fatal(err)
	}
	if resumed.Proposal == nil || len(resumed.Scope) != 2 {
		t.Fatalf("persisted Pending lost the proposal or the scope: %s", saved)
	}
	if _, err := e.Enterprise.Decide(ctx, p.MissionID, authority.Decision{Outcome: authority.Approve, Scope: pass.Scope{"tickets:read"}, DecidedBy: "human:lee"}); err != nil {
		t.Fatal(err)
	}
	g, err := c.Wait(ctx, &resumed)
	if err != nil {
		t.Fatal(err)
	}
	if g.Proposal == nil || !g.Proposal.Scope.Has("tickets:read") {
		t.Errorf("Grant.Proposal = %+v", g.Proposal)
	}
	m, err := e.Enterprise.Mission(ctx, p.MissionID)
	if err != nil || m.ScopeBasis == nil || m.ScopeBasis.Decision != pass.ScopeHumanEdited {
		t.Errorf("mission scope_basis = %+v, %v", m.ScopeBasis, err)
	}
}

// A Harness that asked for nothing learns nothing of the proposal, which
// would otherwise list the user's scopes.
func TestE2EProposalNothingRequested(t *testing.T) {
	e := proposalEnv(t)
	c := newClient(t, e, nil)
	p, err := c.Start(context.Background(), task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	if p.Proposal == nil || len(p.Proposal.Scope) != 0 || len(p.Proposal.Rationale) != 0 || len(p.Proposal.Excluded) != 0 {
		t.Errorf("Pending.Proposal = %+v, want one that names no scope", p.Proposal)
	}
}
