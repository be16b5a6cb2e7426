package harness_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
)

// D1 and D7 through the Harness: an orchestrator delegates a read-only
// sub-task to a sub-agent holding its own key; the sub-agent redeems and
// reads, cannot write, and is refused once the orchestrator's mission is
// revoked.
func TestMissionDelegate(t *testing.T) {
	e := e2e.New(t, e2e.Options{Approver: authority.Rules(authority.Rule{Name: "all", Outcome: authority.Approve, MaxDepth: 1})})
	c := newClient(t, e, nil)
	ctx := context.Background()
	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Mission(g)
	if err != nil {
		t.Fatal(err)
	}
	offer, err := m.Offer("reader", pass.Task{ID: "t-reader", Description: "Read ticket 4411"})
	if err != nil {
		t.Fatal(err)
	}
	// In the sub-agent: its own key, which never leaves it.
	key, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	proofs, err := harness.ProveChild(key, offer, "", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	cg, err := m.Delegate(ctx, harness.Child{Offer: offer, Proofs: proofs, Scope: pass.Scope{"tickets:read"}})
	if err != nil {
		t.Fatal(err)
	}
	if cg.HarnessID != e2eHarness+"/reader" || cg.MissionID == "" || cg.MissionID == g.MissionID || cg.Key != nil {
		t.Fatalf("child grant %v: harness %s mission %s", cg, cg.HarnessID, cg.MissionID)
	}
	sub := newClient(t, e, func(cfg *harness.Config) { cfg.HarnessID = cg.HarnessID })
	if _, err := sub.RedeemBearerToken(ctx, cg, harness.RedeemOptions{}); err == nil {
		t.Fatal("a child grant without the child's key was redeemed")
	}
	cg.Key = key
	tok, err := sub.RedeemBearerToken(ctx, cg, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := whoami(t, e, tok, http.MethodGet); err != nil {
		t.Fatalf("child read: %v", err)
	}
	if _, err := whoami(t, e, tok, http.MethodPost); err == nil {
		t.Error("the read-only child wrote")
	}
	// A scope the parent does not hold is refused.
	offer2, _ := m.Offer("admin", pass.Task{ID: "t-admin", Description: "Administer"})
	key2, _ := dpop.GenerateKey("ES256")
	proofs2, _ := harness.ProveChild(key2, offer2, "", e.Clock.Now())
	_, err = m.Delegate(ctx, harness.Child{Offer: offer2, Proofs: proofs2, Scope: pass.Scope{"admin"}})
	if !errors.Is(err, pass.ErrScope) {
		t.Errorf("delegating a scope the parent lacks: %v, want not_attenuated", err)
	}
	if _, err := e.Enterprise.Revoke(ctx, g.MissionID, "human:lee", "test"); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance((60 * time.Second) + time.Second)
	if _, err := whoami(t, e, tok, http.MethodGet); !errors.Is(err, harness.ErrTokenRejected) {
		t.Errorf("child call after the parent was revoked: %v, want ErrTokenRejected", err)
	}
}

// A mission approved without delegation rights cannot delegate, and the
// in-process convenience sets the child's key.
func TestMissionDelegateNotPermitted(t *testing.T) {
	e := e2e.New(t, e2e.Options{})
	c := newClient(t, e, nil)
	ctx := context.Background()
	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Mission(g)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.DelegateNewKey(ctx, "sub", pass.Task{ID: "t", Description: "d"}, pass.Scope{"tickets:read"}, 0)
	var pe *pass.PeerError
	if !errors.As(err, &pe) || pe.Code != pass.CodeDelegationNotPermitted {
		t.Fatalf("DelegateNewKey: %v, want delegation_not_permitted", err)
	}
	if _, err := m.Offer("Bad Suffix", pass.Task{ID: "t", Description: "d"}); !errors.Is(err, harness.ErrInvalidRequest) {
		t.Errorf("Offer with a bad suffix: %v", err)
	}
}

// D10 through the Harness: a policy that sends write children to a person
// leaves the delegation pending; only the sub-agent's key reads the
// decision, the sub-agent waits until a person approves, then redeems.
func TestMissionDelegatePendingChildWaits(t *testing.T) {
	e := e2e.New(t, e2e.Options{
		Approver: authority.Rules(authority.Rule{Name: "all", Outcome: authority.Approve, MaxDepth: 1}),
		Authority: func(cfg *authority.Config) {
			cfg.DelegationPolicy = func(_ context.Context, _, child *authority.Request) bool {
				return !child.Decision.Scope.Has("tickets:write")
			}
		},
	})
	c := newClient(t, e, nil)
	ctx := context.Background()
	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Mission(g)
	if err != nil {
		t.Fatal(err)
	}
	offer, err := m.Offer("writer", pass.Task{ID: "t-writer", Description: "Comment on ticket 4411"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	proofs, err := harness.ProveChild(key, offer, "", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	cg, err := m.Delegate(ctx, harness.Child{Offer: offer, Proofs: proofs, Scope: pass.Scope{"tickets:read", "tickets:write"}})
	if err != nil {
		t.Fatal(err)
	}
	if !cg.Pending() || cg.MissionID == "" || cg.MissionID == g.MissionID || cg.AgentPass().Value != "" {
		t.Fatalf("child grant %v: pending %v mission %s", cg, cg.Pending(), cg.MissionID)
	}
	pending := make(chan struct{}, 1)
	sub := newClient(t, e, func(cfg *harness.Config) {
		cfg.HarnessID = cg.HarnessID
		cfg.Progress = func(p harness.Progress) {
			if p.Event == harness.EventPending {
				select {
				case pending <- struct{}{}:
				default:
				}
			}
		}
	})
	// A pending grant is not redeemable, and the parent's Client cannot
	// wait for it.
	cg.Key = key
	if _, err := sub.RedeemBearerToken(ctx, cg, harness.RedeemOptions{}); !errors.Is(err, harness.ErrInvalidRequest) {
		t.Errorf("redeeming a pending grant: %v, want ErrInvalidRequest", err)
	}
	if _, err := c.WaitDelegation(ctx, cg); !errors.Is(err, harness.ErrInvalidRequest) {
		t.Errorf("the parent waiting for the child: %v, want ErrInvalidRequest", err)
	}
	cg.Key = key
	type result struct {
		g   *harness.Grant
		err error
	}
	done := make(chan result, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cg, err := sub.WaitDelegation(wctx, cg)
		done <- result{cg, err}
	}()
	<-pending
	mm, err := e.Enterprise.Mission(ctx, cg.MissionID)
	if err != nil || mm.State != pass.MissionPending {
		t.Fatalf("child mission while the sub-agent waits: %v, %v; want pending", mm, err)
	}
	if _, err := e.Enterprise.Decide(ctx, cg.MissionID, authority.Decision{Outcome: authority.Approve, DecidedBy: "human:lee"}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("WaitDelegation: %v", r.err)
	}
	if r.g.Pending() || r.g.Key != key || r.g.MissionID != cg.MissionID || r.g.HarnessID != cg.HarnessID {
		t.Fatalf("approved child grant %v", r.g)
	}
	tok, err := sub.RedeemBearerToken(ctx, r.g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := whoami(t, e, tok, http.MethodPost); err != nil {
		t.Errorf("the approved writer child could not write: %v", err)
	}
}
