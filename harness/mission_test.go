package harness_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
)

// R6 (Harness part): the agent finishes, completes its mission, and its
// token is not used again: the Client refuses it locally, and the same
// token sent by other means is refused by the Service at its next check.
func TestMissionCompleteEndsTokens(t *testing.T) {
	e := e2e.New(t, e2e.Options{})
	c := newClient(t, e, nil)
	ctx := context.Background()
	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	if g.MissionID == "" {
		t.Fatal("the grant carries no mission id")
	}
	m, err := c.Mission(g)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := whoami(t, e, tok, http.MethodGet); err != nil {
		t.Fatalf("API call before completion: %v", err)
	}
	rec, err := m.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != g.MissionID || rec.State != pass.MissionActive || len(rec.History.Events) == 0 || rec.Harness.ID != e2eHarness {
		t.Errorf("Refresh: id %s state %s, %d events", rec.ID, rec.State, len(rec.History.Events))
	}
	done, err := m.Complete(ctx, pass.OutcomeSucceeded, "all tickets triaged")
	if err != nil {
		t.Fatal(err)
	}
	if done.State != pass.MissionCompleted || done.Version != rec.Version+1 || !m.Closed() {
		t.Errorf("Complete: state %s version %d (was %d), closed %v", done.State, done.Version, rec.Version, m.Closed())
	}
	if _, err := whoami(t, e, tok, http.MethodGet); !errors.Is(err, harness.ErrMissionClosed) {
		t.Errorf("API call with the token of a completed mission: %v, want ErrMissionClosed", err)
	}
	// The same token, sent without the Client's guard, is refused once
	// the Service checks the authorization again.
	raw, err := harness.NewToken(tok.Service, tok.Value(), tok.Type, nil, e.Clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance((60 * time.Second) + time.Second)
	if _, err := whoami(t, e, raw, http.MethodGet); !errors.Is(err, harness.ErrTokenRejected) {
		t.Errorf("API call after completion, at the next check: %v, want ErrTokenRejected", err)
	}
	// Completing again is idempotent.
	again, err := m.Complete(ctx, pass.OutcomeSucceeded, "all tickets triaged")
	if err != nil || again.Version != done.Version {
		t.Errorf("second Complete: %v, %v", again, err)
	}
	if _, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{}); err == nil {
		t.Error("a grant of a closed mission was redeemed again")
	}
}

// A completion the Authority cannot take now (here: 429) returns the
// error, closes the handle at once, and is retried by Run until it lands.
func TestMissionCompleteRetriedByRun(t *testing.T) {
	e := e2e.New(t, e2e.Options{Authority: func(c *authority.Config) {
		// One Harness mission call in the bucket: the Refresh takes it.
		off := authority.Rate{PerSecond: -1}
		c.RateLimits.Missions = authority.RateLimit{Client: authority.Rate{PerSecond: 1, Burst: 1}, Network: off, Overall: off}
	}})
	retried := make(chan slog.Record, 4)
	c := newClient(t, e, func(cfg *harness.Config) {
		cfg.Logger = slog.New(recordHandler{msg: "agentpass mission complete retried", ch: retried})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()

	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
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
	var pe *pass.PeerError
	if _, err := m.Complete(ctx, pass.OutcomeFailed, "gave up"); !errors.As(err, &pe) || pe.Status != http.StatusTooManyRequests {
		t.Fatalf("Complete while rate limited: %v, want a 429", err)
	}
	if !m.Closed() || harness.PendingCompletions(c) != 1 {
		t.Errorf("after a failed Complete: closed %v, %d completions pending", m.Closed(), harness.PendingCompletions(c))
	}
	if _, err := whoami(t, e, tok, http.MethodGet); !errors.Is(err, harness.ErrMissionClosed) {
		t.Errorf("API call after a failed Complete: %v, want ErrMissionClosed", err)
	}
	e.Clock.Advance(5 * time.Second) // the bucket refills, the retry is due
	select {
	case <-retried:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not retry the completion")
	}
	rec, err := e.Enterprise.Mission(context.Background(), g.MissionID)
	if err != nil {
		t.Fatal(err)
	}
	if n := harness.PendingCompletions(c); n != 0 {
		t.Errorf("%d completions pending after the retry", n)
	}
	if rec.State != pass.MissionCompleted || rec.Ended == nil || rec.Ended.Reason != "gave up" {
		t.Errorf("mission after the retry: %s %+v", rec.State, rec.Ended)
	}
	cancel()
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
}

// Cancelling Acquire while the request is pending abandons its mission at
// the Authority, so no one approves a task the agent gave up.
func TestAcquireCancelAbandonsPendingMission(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, c := manual(t, func(*e2e.Env, harness.Progress) { cancel() })
	_, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire: %v, want context.Canceled", err)
	}
	page, err := e.Enterprise.Missions(context.Background(), authority.MissionListOptions{})
	if err != nil || len(page.Missions) != 1 {
		t.Fatalf("missions: %v, %v", page, err)
	}
	m := page.Missions[0]
	if m.State != pass.MissionRevoked || m.Ended == nil || m.Ended.Cause != pass.CauseCanceled {
		t.Errorf("mission after a cancelled Acquire: %s %+v", m.State, m.Ended)
	}
}

// Without the mission extension at the Authority there is no handle.
func TestMissionUnsupported(t *testing.T) {
	c, err := harness.New(harness.Config{HarnessID: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Mission(&harness.Grant{}); !errors.Is(err, harness.ErrMissionUnsupported) {
		t.Errorf("Mission of a grant without a mission: %v", err)
	}
}

// recordHandler sends records with one message to ch.
type recordHandler struct {
	msg string
	ch  chan slog.Record
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.ch <- r:
		default:
		}
	}
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }
