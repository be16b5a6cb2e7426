package harness_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// Review O9, A2 and amendment 10 end to end: a staged root delegates to a
// child (read and write) which delegates write to a grandchild, both
// redeemed at the Service, which takes pushed events. The root's back move
// reaches each of them as a SET: their next write is refused at once,
// with no authorization check. The root's forward move widens neither by
// itself: each SET only marks its delegation stale, and the next write of
// each runs exactly one check, whose answer lets it through.
func TestStagesDescendantsPushEndToEndO9(t *testing.T) {
	var checks atomic.Int32
	applied := make(chan service.MissionEvent, 16)
	store := service.NewMemoryStore()
	e := e2e.New(t, e2e.Options{
		Approver: authority.Rules(authority.Rule{Name: "all", Outcome: authority.Approve, MaxDepth: 2}),
		// Writing tickets is classed as read here, so both stages may be
		// auto: the moves need nobody.
		Authority: func(c *authority.Config) {
			c.Effects = authority.EffectRules{":read": authority.EffectRead, ":write": authority.EffectRead}
		},
		Service: func(c *service.Config) {
			c.EventDelivery = pass.DeliveryPush
			c.Store = &appliedStore{Store: store, applied: applied}
			c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return checkCounter{rt, &checks} }
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Enterprise.RunEventTransmitter(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	// waitFor returns the events applied for each of the missions, in
	// any order.
	waitFor := func(what string, missions ...string) map[string]service.MissionEvent {
		t.Helper()
		got := map[string]service.MissionEvent{}
		for len(got) < len(missions) {
			select {
			case ev := <-applied:
				got[ev.MissionID] = ev
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: events applied for %v, want %v", what, got, missions)
			}
		}
		for _, m := range missions {
			if _, ok := got[m]; !ok {
				t.Fatalf("%s: events applied for %v, want %v", what, got, missions)
			}
		}
		return got
	}
	refused := func(err error) bool {
		var pe *pass.PeerError
		return errors.As(err, &pe) && (pe.Code == pass.CodeInsufficientScope || pe.Code == pass.CodeScopeEmpty)
	}

	c := newClient(t, e, nil)
	req := task(e2e.EnterpriseUser)
	req.Stages = []pass.Stage{
		{Name: "discover", Scope: pass.Scope{"tickets:read"}, Gate: pass.GateAuto},
		{Name: "respond", Scope: pass.Scope{"tickets:read", "tickets:write"}, Gate: pass.GateAuto},
	}
	g, err := c.Acquire(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	root, err := c.Mission(g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.RequestStage(ctx, "respond", "replying"); err != nil {
		t.Fatalf("RequestStage(respond): %v", err)
	}

	// The child, with its own key, may delegate once more.
	offer, err := root.Offer("replier", pass.Task{ID: "t-replier", Description: "Reply to duplicates"})
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
	cg, err := root.Delegate(ctx, harness.Child{Offer: offer, Proofs: proofs, Scope: pass.Scope{"tickets:read", "tickets:write"}, MaxDepth: 1})
	if err != nil {
		t.Fatal(err)
	}
	cg.Key = key
	sub := newClient(t, e, func(cfg *harness.Config) { cfg.HarnessID = cg.HarnessID })
	childTok, err := sub.RedeemBearerToken(ctx, cg, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	child, err := sub.Mission(cg)
	if err != nil {
		t.Fatal(err)
	}
	gg, err := child.DelegateNewKey(ctx, "writer", pass.Task{ID: "t-writer", Description: "Write the replies"}, pass.Scope{"tickets:write"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	subsub := newClient(t, e, func(cfg *harness.Config) { cfg.HarnessID = gg.HarnessID })
	grandTok, err := subsub.RedeemBearerToken(ctx, gg, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]*harness.Token{"child": childTok, "grandchild": grandTok} {
		if _, err := whoami(t, e, tok, http.MethodPost); err != nil {
			t.Fatalf("%s write at respond: %v", name, err)
		}
	}

	// Back: each descendant's write is refused at once, with no check.
	before := checks.Load()
	if _, err := root.RequestStage(ctx, "discover", "done replying"); err != nil {
		t.Fatalf("RequestStage(discover): %v", err)
	}
	evs := waitFor("back", cg.MissionID, gg.MissionID)
	for m, want := range map[string]int{cg.MissionID: 1, gg.MissionID: 0} {
		if ev := evs[m]; ev.Action != service.EventNarrow || len(ev.Scope) != want {
			t.Errorf("back move reached %s as %+v, want a narrowing to %d scopes", m, ev, want)
		}
	}
	for name, tok := range map[string]*harness.Token{"child": childTok, "grandchild": grandTok} {
		if _, err := whoami(t, e, tok, http.MethodPost); !refused(err) {
			t.Errorf("%s write after the root's back move: %v, want insufficient_scope or scope_empty", name, err)
		}
	}
	if _, err := whoami(t, e, childTok, http.MethodGet); err != nil {
		t.Errorf("child read after the root's back move: %v", err)
	}
	if n := checks.Load() - before; n != 0 {
		t.Errorf("%d authorization checks after the back move, want none", n)
	}

	// Forward: the SETs widen nothing; one check each confirms.
	before = checks.Load()
	if _, err := root.RequestStage(ctx, "respond", "more replies"); err != nil {
		t.Fatalf("RequestStage(respond) again: %v", err)
	}
	evs = waitFor("forward", cg.MissionID, gg.MissionID)
	for m, ev := range evs {
		d, err := store.Delegation(ctx, ev.AuthorizationID)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Stale || d.CurrentScope.Has("tickets:write") {
			t.Errorf("%s after the forward SET: stale %v scope %v, want stale and no write until a check", m, d.Stale, d.CurrentScope)
		}
	}
	for name, tok := range map[string]*harness.Token{"child": childTok, "grandchild": grandTok} {
		if _, err := whoami(t, e, tok, http.MethodPost); err != nil {
			t.Errorf("%s write after the root's forward move: %v", name, err)
		}
	}
	if n := checks.Load() - before; n != 2 {
		t.Errorf("%d authorization checks after the forward move, want exactly 2 (one per descendant)", n)
	}
}
