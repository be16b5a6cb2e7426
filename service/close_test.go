package service_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// TestRefusalAfterConsumptionRevokedByRun: a redemption refused after the
// Authority consumed the pass answers with the original error, tries to
// revoke the delegation at once, keeps the failed close in the Store, and
// Run retries it until the Authority has it (issue #13 item 4).
func TestRefusalAfterConsumptionRevokedByRun(t *testing.T) {
	e := newEnv(t, func(c *service.Config) {
		c.OnDelegation = func(context.Context, *service.Delegation) error { return errors.New("signups closed") }
		c.CloseRetryInterval = time.Minute // the first round of Run is immediate
	})
	e.idp.failCloses.Store(1)
	e.idp.closes = make(chan string, 1)
	value := e.idp.issue(validation(corpUser, pass.BearerToken))
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, value), nil)
	if r.status != http.StatusForbidden || r.errorCode() != pass.CodeDelegationRejected {
		t.Fatalf("refusal: %d %s, want the original 403 delegation_rejected", r.status, r.body)
	}
	if n := e.idp.closeCalls.Load(); n != 1 {
		t.Fatalf("%d close calls at refusal, want 1", n)
	}
	due, err := e.store.DuePendingCloses(context.Background(), e.clock.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 1 || due[0].AuthorizationID == "" || due[0].Reason != "redemption refused: delegation_rejected" || due[0].Attempts != 1 {
		t.Fatalf("pending closes: %+v %v", due, err)
	}
	id := due[0].AuthorizationID
	e.clock.Advance(2 * time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	select {
	case got := <-e.idp.closes:
		if got != id {
			t.Errorf("closed %q, want %q", got, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not retry the close")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if action, _ := e.idp.closed.Load(id); action != pass.CloseRevoke {
		t.Errorf("close action %v, want revoke", action)
	}
	if due, err := e.store.DuePendingCloses(context.Background(), e.clock.Now().Add(time.Hour), 10); err != nil || len(due) != 0 {
		t.Errorf("pending closes after the retry: %+v %v", due, err)
	}
	recs := e.logs.records("agentpass authorization close")
	if len(recs) < 2 || recs[0]["authorization_id"] != id || recs[0]["outcome"] != "retry_later" {
		t.Errorf("close audit records: %v", recs)
	}
}
