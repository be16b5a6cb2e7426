package harness_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// appliedStore signals every event the Service's store applied, so a test
// waits for a push instead of sleeping.
type appliedStore struct {
	service.Store
	applied chan service.MissionEvent
}

func (s *appliedStore) ApplyEvent(ctx context.Context, e service.MissionEvent) (bool, error) {
	ok, err := s.Store.ApplyEvent(ctx, e)
	if ok && err == nil {
		s.applied <- e
	}
	return ok, err
}

// checkCounter counts the Service's authorization checks.
type checkCounter struct {
	next http.RoundTripper
	n    *atomic.Int32
}

func (c checkCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/authorization-check") {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// S1 (push) and E5: with events pushed, an auto forward move reaches the
// Service as a mission-stage-changed SET that only marks the delegation
// stale, so the next request needing the new stage's scope succeeds after
// exactly one confirming check; a back move narrows at once, and the next
// such request is refused with no check at all.
func TestStagesPushEndToEnd(t *testing.T) {
	var checks atomic.Int32
	applied := make(chan service.MissionEvent, 16)
	e := e2e.New(t, e2e.Options{
		// Writing tickets is classed as read here, so both stages may be
		// auto: the move needs nobody.
		Authority: func(c *authority.Config) {
			c.Effects = authority.EffectRules{":read": authority.EffectRead, ":write": authority.EffectRead}
		},
		Service: func(c *service.Config) {
			c.EventDelivery = pass.DeliveryPush
			c.Store = &appliedStore{Store: service.NewMemoryStore(), applied: applied}
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
	wait := func(what, stage string) service.MissionEvent {
		t.Helper()
		select {
		case ev := <-applied:
			if ev.Stage != stage {
				t.Fatalf("%s: applied event for stage %q, want %q", what, ev.Stage, stage)
			}
			return ev
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no event reached the Service", what)
		}
		return service.MissionEvent{}
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
	m, err := c.Mission(g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := whoami(t, e, tok, http.MethodPost); !stageScopeExceeded(err) {
		t.Fatalf("write at discover: %v, want stage_scope_exceeded", err)
	}

	// Forward: the SET marks the delegation stale; one check confirms.
	before := checks.Load()
	if _, err := m.RequestStage(ctx, "respond", "replying"); err != nil {
		t.Fatalf("RequestStage(respond): %v", err)
	}
	if ev := wait("forward", "respond"); ev.Action != service.EventNarrow || len(ev.Scope) != 2 {
		t.Errorf("forward event %+v", ev)
	}
	if _, err := whoami(t, e, tok, http.MethodPost); err != nil {
		t.Fatalf("write after the auto move: %v", err)
	}
	if n := checks.Load() - before; n != 1 {
		t.Errorf("%d authorization checks after the forward move, want exactly 1", n)
	}

	// Back: refused at once, with no check.
	before = checks.Load()
	if _, err := m.RequestStage(ctx, "discover", "done"); err != nil {
		t.Fatalf("RequestStage(discover): %v", err)
	}
	wait("back", "discover")
	if _, err := whoami(t, e, tok, http.MethodPost); !stageScopeExceeded(err) {
		t.Fatalf("write after the back move: %v, want stage_scope_exceeded", err)
	}
	if _, err := whoami(t, e, tok, http.MethodGet); err != nil {
		t.Fatalf("read after the back move: %v", err)
	}
	if n := checks.Load() - before; n != 0 {
		t.Errorf("%d authorization checks after the back move, want none", n)
	}
}
