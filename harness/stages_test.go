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

// classify lets the e2e Authorities gate stages by effect.
func classify(c *authority.Config) {
	c.Effects = authority.EffectRules{":read": authority.EffectRead, ":write": authority.EffectWrite}
}

var humanPlan = []pass.Stage{
	{Name: "discover", Scope: pass.Scope{"tickets:read"}},
	{Name: "respond", Scope: pass.Scope{"tickets:read", "tickets:write"}, Gate: pass.GateHuman},
}

// stageScopeExceeded reports whether err is the Service's refusal of a
// later stage's scope.
func stageScopeExceeded(err error) bool {
	var pe *pass.PeerError
	return errors.As(err, &pe) && pe.Code == pass.CodeStageScopeExceeded
}

// S1 (poll), S2 and S4 end to end: Gate answers from the plan; a human
// gate waits for the person (the API still refuses meanwhile), approval
// lets the call through at the Service's next check, a back move narrows
// at once, a denial leaves the stage.
func TestStagesEndToEnd(t *testing.T) {
	e := e2e.New(t, e2e.Options{Authority: classify})
	c := newClient(t, e, nil)
	sleeping, release := make(chan time.Duration), make(chan struct{})
	harness.SetSleep(c, func(ctx context.Context, d time.Duration) error {
		sleeping <- d
		<-release
		return nil
	})
	ctx := context.Background()
	req := task(e2e.EnterpriseUser)
	req.Stages = humanPlan
	g, err := c.Acquire(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Mission(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Gate("tickets:read"); err == nil {
		t.Error("Gate before the mission was read allowed the scope")
	}
	if _, err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var next *harness.ErrNeedsTransition
	if err := m.Gate("tickets:read"); err != nil {
		t.Errorf("Gate(read) = %v", err)
	}
	if err := m.Gate("tickets:write"); !errors.As(err, &next) || next.Stage != "respond" {
		t.Errorf("Gate(write) = %v, want ErrNeedsTransition{respond}", err)
	}
	if err := m.Gate("admin"); !errors.Is(err, harness.ErrOutsideMission) {
		t.Errorf("Gate(admin) = %v, want ErrOutsideMission", err)
	}
	if _, err := whoami(t, e, tok, http.MethodPost); !stageScopeExceeded(err) {
		t.Fatalf("write at discover: %v, want stage_scope_exceeded", err)
	}

	request := func(to string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := m.RequestStage(ctx, to, "12 duplicates to answer")
			done <- err
		}()
		return done
	}
	// S2: pending; the API still refuses; approved.
	done := request("respond")
	if d := <-sleeping; d < time.Second {
		t.Errorf("poll interval %v", d)
	}
	if _, err := whoami(t, e, tok, http.MethodPost); !stageScopeExceeded(err) {
		t.Fatalf("write while pending: %v", err)
	}
	if _, err := e.Enterprise.DecideStage(ctx, g.MissionID, true, "human:lee@corp.test", "go ahead"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("RequestStage: %v", err)
	}
	if err := m.Gate("tickets:write"); err != nil {
		t.Errorf("Gate(write) after the move = %v", err)
	}
	e.Clock.Advance((60 * time.Second) + time.Second)
	if _, err := whoami(t, e, tok, http.MethodPost); err != nil {
		t.Fatalf("write after the move: %v", err)
	}

	// S4: back at once; the next check narrows.
	if _, err := m.RequestStage(ctx, "discover", "done writing"); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance((60 * time.Second) + time.Second)
	if _, err := whoami(t, e, tok, http.MethodPost); !stageScopeExceeded(err) {
		t.Fatalf("write after the back move: %v", err)
	}

	// S2, denied: the stage stays, the API refuses.
	release = make(chan struct{})
	done = request("respond")
	<-sleeping
	if _, err := e.Enterprise.DecideStage(ctx, g.MissionID, false, "human:lee@corp.test", "not today"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; !errors.Is(err, pass.ErrForbidden) {
		t.Fatalf("denied RequestStage = %v, want transition_denied", err)
	}
	rec, err := m.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last := rec.History.Events[len(rec.History.Events)-1]; last.Type != "stage_denied" || rec.AuthorityModel.Stage != "discover" {
		t.Errorf("after denial: last event %s, stage %s", last.Type, rec.AuthorityModel.Stage)
	}
	if _, err := whoami(t, e, tok, http.MethodPost); !stageScopeExceeded(err) {
		t.Fatalf("write after denial: %v", err)
	}
}

// RequestStage checks its arguments and needs the extension.
func TestRequestStageInvalid(t *testing.T) {
	e := e2e.New(t, e2e.Options{Authority: classify})
	c := newClient(t, e, nil)
	req := task(e2e.EnterpriseUser)
	req.Stages = []pass.Stage{{Name: "Bad Name", Scope: pass.Scope{"tickets:read"}}}
	if _, err := c.Acquire(context.Background(), req); !errors.Is(err, harness.ErrInvalidRequest) {
		t.Errorf("Acquire with a bad plan = %v, want ErrInvalidRequest", err)
	}
	req.Stages = humanPlan
	g, err := c.Acquire(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Mission(g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.RequestStage(context.Background(), "no such stage!", ""); !errors.Is(err, harness.ErrInvalidRequest) {
		t.Errorf("RequestStage(bad name) = %v", err)
	}
	_, err = m.RequestStage(context.Background(), "nope", "")
	var pe *pass.PeerError
	if !errors.As(err, &pe) || pe.Code != pass.CodeStageUnknown {
		t.Errorf("RequestStage(unknown) = %v, want stage_unknown", err)
	}
}
