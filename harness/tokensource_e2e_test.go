package harness_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
)

// signal returns a Progress hook that reports each event of the given kinds
// on the returned channel.
func signal(kinds ...harness.Event) (func(harness.Progress), chan harness.Progress) {
	ch := make(chan harness.Progress, 16)
	return func(p harness.Progress) {
		for _, k := range kinds {
			if p.Event == k {
				ch <- p
			}
		}
	}, ch
}

func await(t *testing.T, ch chan harness.Progress, ev harness.Event) harness.Progress {
	t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case p := <-ch:
			if p.Event == ev {
				return p
			}
		case <-timeout.C:
			t.Fatalf("no %s event", ev)
			return harness.Progress{}
		}
	}
}

// Issue #15, H-POLL-3: an LLM-style loop whose tool calls each allow
// 50 ms, while a person takes longer to approve. Exactly one request
// reaches the Authority, the approver sees one card, and the first tool
// call after the approval gets the token.
func TestE2EToolLoopFilesOneRequest(t *testing.T) {
	e := e2e.New(t, e2e.Options{Approver: authority.Manual{}})
	progress, events := signal(harness.EventPending, harness.EventRedeemed)
	c := newClient(t, e, func(cfg *harness.Config) { cfg.Progress = progress })
	ts := c.TokenSource(task(e2e.EnterpriseUser), harness.TokenSourceOptions{})
	defer ts.Close()

	toolCall := func() (*harness.Token, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return ts.Token(ctx)
	}
	if _, err := toolCall(); !errors.Is(err, harness.ErrPending) {
		t.Fatalf("first tool call: %v, want ErrPending", err)
	}
	pending := await(t, events, harness.EventPending)
	if pending.ApprovalURL == "" {
		t.Error("the pending event has no approval page")
	}
	for i := range 3 { // the model keeps calling tools; the person has not looked yet
		if _, err := toolCall(); !errors.Is(err, harness.ErrPending) {
			t.Fatalf("tool call %d: %v, want ErrPending", i+2, err)
		}
	}

	ctx := context.Background()
	cards, err := e.Enterprise.Pending(ctx, authority.ListOptions{Now: e.Clock.Now()})
	if err != nil || len(cards) != 1 {
		t.Fatalf("approver sees %d cards (%v), want 1", len(cards), err)
	}
	if cards[0].TaskID != ts.TaskID() {
		t.Errorf("card task %q, source task %q", cards[0].TaskID, ts.TaskID())
	}
	if _, err := e.Enterprise.Decide(ctx, cards[0].MissionID, authority.Decision{
		Outcome: authority.Approve, Scope: pass.Scope{"tickets:read"}, DecidedBy: "human:manager@corp.test",
	}); err != nil {
		t.Fatalf("Decide: %v", err)
	}
	await(t, events, harness.EventRedeemed)
	tok, err := toolCall()
	if err != nil {
		t.Fatalf("first tool call after the approval: %v", err)
	}
	if got, err := whoami(t, e, tok, http.MethodGet); err != nil || got["user"] != e2e.EnterpriseUser {
		t.Fatalf("API call: %v, %v", got, err)
	}
	page, err := e.Enterprise.Missions(ctx, authority.MissionListOptions{})
	if err != nil || len(page.Missions) != 1 {
		t.Fatalf("requests at the Authority: %d (%v), want 1", len(page.Missions), err)
	}
	if n := len(events); n != 0 {
		t.Errorf("%d more pending or redeemed events, want none", n)
	}
}

// Issue #15: closing a TokenSource whose request is pending abandons the
// request's mission at the Authority.
func TestE2ETokenSourceCloseAbandons(t *testing.T) {
	e := e2e.New(t, e2e.Options{Approver: authority.Manual{}})
	progress, events := signal(harness.EventPending)
	c := newClient(t, e, func(cfg *harness.Config) { cfg.Progress = progress })
	ts := c.TokenSource(task(e2e.EnterpriseUser), harness.TokenSourceOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.Token(ctx); !errors.Is(err, harness.ErrPending) {
		t.Fatalf("Token: %v, want ErrPending", err)
	}
	await(t, events, harness.EventPending)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	page, err := e.Enterprise.Missions(context.Background(), authority.MissionListOptions{})
	if err != nil || len(page.Missions) != 1 {
		t.Fatalf("missions: %v, %v", page, err)
	}
	if m := page.Missions[0]; m.State != pass.MissionRevoked || m.Ended == nil || m.Ended.Cause != pass.CauseCanceled {
		t.Errorf("mission after Close: %s %+v", m.State, m.Ended)
	}
	if _, err := ts.Token(context.Background()); !errors.Is(err, harness.ErrClosed) {
		t.Errorf("Token after Close: %v, want ErrClosed", err)
	}
}
