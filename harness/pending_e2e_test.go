package harness_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
)

func fileKeys(t *testing.T, dir string) *harness.FileKeyStore {
	t.Helper()
	ks, err := harness.NewFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// Issue #15: a process that restarts while a person decides resumes with
// Wait from the persisted Pending and its key file, and gets the pass; a
// second Start for the same task joins the first request.
func TestE2EStartWaitAcrossRestart(t *testing.T) {
	e := e2e.New(t, e2e.Options{Approver: authority.Manual{}})
	dir := filepath.Join(t.TempDir(), "keys")
	c1 := newClient(t, e, func(cfg *harness.Config) { cfg.KeyStore = fileKeys(t, dir) })
	ctx := context.Background()
	req := task(e2e.EnterpriseUser)
	req.Task.ID = "task-resume"
	p, err := c1.Start(ctx, req)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if p.ApprovalURL == "" || p.MissionID == "" || p.RequestID == "" || p.TaskID != "task-resume" {
		t.Errorf("pending = %+v", p)
	}
	again, err := c1.Start(ctx, req)
	if err != nil || again.RequestID != p.RequestID {
		t.Fatalf("second Start: %v, %v; want to join request %s", again, err, p.RequestID)
	}
	if cards, _ := e.Enterprise.Pending(ctx, authority.ListOptions{Now: e.Clock.Now()}); len(cards) != 1 {
		t.Fatalf("requests at the Authority = %d, want 1", len(cards))
	}
	fi, err := os.Stat(filepath.Join(dir, p.KeyRef+".key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	saved, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}

	// The process restarts: a new Client, the same key directory.
	c2 := newClient(t, e, func(cfg *harness.Config) { cfg.KeyStore = fileKeys(t, dir) })
	var resumed harness.Pending
	if err := json.Unmarshal(saved, &resumed); err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c2.Wait(stopped, &resumed); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context: %v", err)
	}
	m, err := e.Enterprise.Mission(ctx, p.MissionID)
	if err != nil || m.State != pass.MissionPending {
		t.Fatalf("mission after an interrupted Wait: %v, %v; want still pending", m, err)
	}
	if _, err := e.Enterprise.Decide(ctx, p.MissionID, authority.Decision{Outcome: authority.Approve, DecidedBy: "human:manager@corp.test"}); err != nil {
		t.Fatal(err)
	}
	g, err := c2.Wait(ctx, &resumed)
	if err != nil {
		t.Fatalf("Wait after the restart: %v", err)
	}
	tok, err := c2.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatalf("redeem with the reloaded key: %v", err)
	}
	if got, err := whoami(t, e, tok, http.MethodGet); err != nil || got["user"] != e2e.EnterpriseUser {
		t.Fatalf("API call: %v, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, p.KeyRef+".key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file after the grant: %v, want deleted", err)
	}
}

// Cancel abandons the request's mission at the Authority and deletes the key.
func TestE2EStartCancel(t *testing.T) {
	e := e2e.New(t, e2e.Options{Approver: authority.Manual{}})
	c := newClient(t, e, nil)
	ctx := context.Background()
	p, err := c.Start(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, p); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	m, err := e.Enterprise.Mission(ctx, p.MissionID)
	if err != nil || m.State != pass.MissionRevoked || m.Ended == nil || m.Ended.Cause != pass.CauseCanceled {
		t.Fatalf("mission after Cancel: %+v, %v", m, err)
	}
	if _, err := c.Wait(ctx, p); !errors.Is(err, harness.ErrKeyNotFound) {
		t.Errorf("Wait after Cancel: %v, want ErrKeyNotFound", err)
	}
}
