package authority_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/pass"
)

// hookSink collects the events a RunHooks handler receives.
type hookSink struct {
	mu     sync.Mutex
	events []authority.HookEvent
	got    chan struct{}
}

func newHookSink() *hookSink { return &hookSink{got: make(chan struct{}, 1000)} }

func (s *hookSink) handle(_ context.Context, e authority.HookEvent) error {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
	s.got <- struct{}{}
	return nil
}

// waitTypes waits until the events of mission are exactly want.
func (s *hookSink) waitTypes(t *testing.T, mission string, want ...string) []authority.HookEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		var got []string
		var evs []authority.HookEvent
		for _, e := range s.events {
			if e.MissionID == mission {
				got, evs = append(got, e.Entry.Type), append(evs, e)
			}
		}
		s.mu.Unlock()
		if slices.Equal(got, want) {
			return evs
		}
		select {
		case <-s.got:
		case <-deadline:
			t.Fatalf("events of %s: got %v, want %v", mission, got, want)
		}
	}
}

// runHooks runs RunHooks until the test ends and checks that it returned
// because of the cancellation.
func runHooks(t *testing.T, a *authority.Authority, h authority.Hooks) {
	t.Helper()
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.RunHooks(hctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("RunHooks returned %v", err)
		}
	})
}

// The hook stream tells the whole lifecycle from the mission history, in
// order, with the request as stored (issue #16 item 3).
func TestRunHooksLifecycle(t *testing.T) {
	e := newEnv(t, approveAll)
	sink := newHookSink()
	runHooks(t, e.auth, authority.Hooks{Handle: sink.handle})

	value, st := e.approvedPass(e.plainHarness())
	if r, _ := e.validate(e.svc, value); r.status != http.StatusOK {
		t.Fatalf("validate: %d %s", r.status, r.body)
	}
	if _, err := e.auth.Suspend(ctx, st.Mission.ID, "human:lee", "looks odd"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth.Resume(ctx, st.Mission.ID, "human:lee"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth.Revoke(ctx, st.Mission.ID, "human:lee", "done"); err != nil {
		t.Fatal(err)
	}
	evs := sink.waitTypes(t, st.Mission.ID, "requested", "approved", "redeemed", "suspended", "resumed", "revoked")
	for i, ev := range evs {
		if ev.Entry.Seq != int64(i+1) || ev.Entry.Hash == "" {
			t.Errorf("event %d: seq %d hash %q", i, ev.Entry.Seq, ev.Entry.Hash)
		}
		if ev.Request == nil || ev.Request.TaskID != "task-1" || ev.Request.IDHash == "" {
			t.Errorf("event %d: request %+v", i, ev.Request)
		}
	}
	if got := evs[5].Entry.By; got != "human:lee" {
		t.Errorf("revoked by %q", got)
	}
}

// A failing handler gets the same event again, and nothing after it
// overtakes it; a full queue pauses reading, is logged and counted, and
// loses nothing.
func TestRunHooksRetryAndOverflow(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var seen []string
	failed := false
	release := make(chan struct{})
	got := make(chan struct{}, 100)
	runHooks(t, e.auth, authority.Hooks{Queue: 1, Handle: func(_ context.Context, ev authority.HookEvent) error {
		<-release
		mu.Lock()
		defer mu.Unlock()
		if !failed {
			failed = true
			return errors.New("slack is down")
		}
		seen = append(seen, ev.MissionID+":"+ev.Entry.Type)
		got <- struct{}{}
		return nil
	}})
	var missions []string
	for i := range 4 {
		h := e.plainHarness()
		h.req.Task.ID = fmt.Sprint("task-", i)
		_, st := e.issue(h.req)
		missions = append(missions, st.Mission.ID)
	}
	// Reading ahead stops at the queue: one event in the handler, one
	// queued, the third waits.
	deadline := time.After(10 * time.Second)
	for e.auth.HookOverflows() == 0 {
		select {
		case <-deadline:
			t.Fatal("no overflow counted")
		case <-time.After(time.Millisecond):
		}
	}
	close(release)
	for range missions {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("delivered %v", seen)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{missions[0] + ":requested", missions[1] + ":requested", missions[2] + ":requested", missions[3] + ":requested"}
	if !slices.Equal(seen, want) {
		t.Errorf("delivered %v, want %v", seen, want)
	}
	if !strings.Contains(e.logs.String(), "agentpass hooks: queue full") || !strings.Contains(e.logs.String(), "slack is down") {
		t.Errorf("overflow or failure not logged:\n%s", e.logs)
	}
}

// Every decision passes ValidateDecision, whichever path made it; a
// refusal leaves the request pending with a structured error.
func TestValidateDecision(t *testing.T) {
	type notAllowed struct{ error }
	validate := func(_ context.Context, r *authority.Request, d authority.Decision) error {
		if strings.HasPrefix(d.DecidedBy, "human:") && d.DecidedBy != "human:lee" {
			return notAllowed{fmt.Errorf("%s may not decide for %s", d.DecidedBy, r.User)}
		}
		if d.DecidedBy == "rule:all" && slices.Contains(d.Scope, "tickets:write") {
			return errors.New("rules never grant write")
		}
		return nil
	}
	t.Run("Decide", func(t *testing.T) {
		e := newEnv(t, func(c *authority.Config) { c.ValidateDecision = validate })
		_, st := e.issue(e.plainHarness().req)
		_, err := e.auth.Decide(ctx, st.Mission.ID, authority.Decision{Outcome: authority.Approve, DecidedBy: "human:mallory"})
		var na notAllowed
		if !errors.Is(err, authority.ErrDecisionRefused) || !errors.As(err, &na) {
			t.Fatalf("Decide by mallory: %v", err)
		}
		if r, err := e.auth.Request(ctx, st.Mission.ID); err != nil || r.Status != pass.StatusPending || r.HistoryCount != 1 {
			t.Fatalf("after a refusal: %+v %v", r, err)
		}
		if !strings.Contains(e.logs.String(), "decision refused by validation") {
			t.Error("refusal not logged")
		}
		out, err := e.auth.Decide(ctx, st.Mission.ID, authority.Decision{Outcome: authority.Deny, DecidedBy: "human:lee", Reason: "no"})
		if err != nil || out.Status != pass.StatusDenied {
			t.Fatalf("Decide by lee: %+v %v", out, err)
		}
	})
	t.Run("Approver", func(t *testing.T) {
		e := newEnv(t, approveAll, func(c *authority.Config) { c.ValidateDecision = validate })
		r, st := e.issue(e.plainHarness().req)
		if st == nil || st.Status != pass.StatusPending {
			t.Fatalf("automatic approval of write passed: %d %s", r.status, r.body)
		}
	})
}

// Audit export: one JSON line per history entry, with the full request id
// hash, task, scopes and decider; retention keeps decided missions and
// their verifiable history forever, and drops undecided ones.
func TestExportAuditAndRetention(t *testing.T) {
	store := authority.NewMemoryStore(authority.WithRetentionPolicy(authority.Retention{
		Undecided: authority.Forever, Decided: authority.Forever, Authorizations: time.Hour}))
	e := newEnv(t, func(c *authority.Config) { c.Store = store })
	_, decided := e.issue(e.plainHarness().req)
	if _, err := e.auth.Decide(ctx, decided.Mission.ID, authority.Decision{Outcome: authority.Approve, Scope: pass.Scope{"tickets:read"}, DecidedBy: "human:lee"}); err != nil {
		t.Fatal(err)
	}
	_, flood := e.issue(e.plainHarness().req)

	var buf bytes.Buffer
	if err := e.auth.ExportAudit(ctx, &buf, time.Time{}); err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("export has %d lines, want 3 (requested, approved; requested):\n%s", len(lines), buf.String())
	}
	req, _ := e.auth.Request(ctx, decided.Mission.ID)
	var l map[string]any
	for _, x := range lines {
		if x["event"] == "approved" {
			l = x
		}
	}
	dec, _ := l["decision"].(map[string]any)
	task, _ := l["task"].(map[string]any)
	if l["event"] != "approved" || l["request_id_hash"] != req.IDHash || len(req.IDHash) < 64 || task["id"] != "task-1" ||
		dec["decided_by"] != "human:lee" || fmt.Sprint(l["scope"]) != "[tickets:read]" {
		t.Errorf("approved line: %v", l)
	}

	// Long after: the decided mission and its history stay and verify;
	// the undecided one is gone although Forever was asked for it.
	e.clock.Advance(400 * 24 * time.Hour)
	_, _ = e.issue(e.plainHarness().req) // a write prunes
	if _, err := e.auth.Request(ctx, flood.Mission.ID); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("undecided request kept: %v", err)
	}
	m, err := e.auth.Mission(ctx, decided.Mission.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.auth.VerifyHistory(ctx, m.ID); err != nil {
		t.Errorf("kept history does not verify: %v", err)
	}
	_ = authoritytest.T0
}

// A delegation approved within its parent's grant passes
// ValidateDecision too: refused, the child waits for a person, and the
// hooks tell its "requested" entry with its parent.
func TestValidateDecisionDelegation(t *testing.T) {
	var mu sync.Mutex
	var asked []authority.Decision
	e := newEnv(t, approveDepth(1), func(c *authority.Config) {
		c.ValidateDecision = func(_ context.Context, r *authority.Request, d authority.Decision) error {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, d)
			if r.ParentMissionID != "" && slices.Contains(d.Scope, "tickets:write") {
				return errors.New("sub-agents never write unattended")
			}
			return nil
		}
	})
	sink := newHookSink()
	runHooks(t, e.auth, authority.Hooks{Handle: sink.handle})
	e.svc.SetScopes("tickets:read", "tickets:write")
	h := e.newHarness()
	_, root := e.approvedPass(h)
	e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, e.newSub(harnessID, "reader"), "tickets:read"))
	req := e.delegation(root.Mission.ID, e.newSub(harnessID, "writer"), "tickets:write")
	r := e.postProof("/missions/delegate", req, e.missionProof(h.key, harnessID, "/missions/delegate", root.Mission.ID, 0))
	var st pass.IssuanceStatus
	if r.status != http.StatusAccepted || pass.Decode(r.body, &st) != nil || st.Status != pass.StatusPending || st.AgentPass != nil {
		t.Fatalf("refused delegation: %d %s", r.status, r.body)
	}
	evs := sink.waitTypes(t, st.Mission.ID, "requested")
	if evs[0].Entry.Details["parent"] != root.Mission.ID {
		t.Errorf("requested entry: %v", evs[0].Entry.Details)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 3 { // the root's approval, and the two children
		t.Errorf("validator asked %d times: %+v", len(asked), asked)
	}
}

// The MemoryStore's consumer leases: one owner at a time, taken over when
// released or lapsed; a bad position is an error, not a panic.
func TestMemoryLogStoreLeases(t *testing.T) {
	s := authority.NewMemoryStore()
	t0 := authoritytest.T0
	if _, ok, err := s.ClaimConsumer(ctx, "c", "a", t0, t0.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if _, ok, _ := s.ClaimConsumer(ctx, "c", "b", t0, t0.Add(time.Minute)); ok {
		t.Fatal("a held lease was taken")
	}
	if err := s.SaveConsumer(ctx, "c", "b", "7", t0); !errors.Is(err, authority.ErrState) {
		t.Fatalf("save by a non-owner: %v", err)
	}
	if err := s.SaveConsumer(ctx, "c", "a", "7", t0); err != nil {
		t.Fatal(err)
	}
	if pos, ok, err := s.ClaimConsumer(ctx, "c", "b", t0, t0.Add(time.Minute)); !ok || err != nil || pos != "7" {
		t.Fatalf("claim after release: %q %v %v", pos, ok, err)
	}
	if pos, ok, _ := s.ClaimConsumer(ctx, "c", "a", t0.Add(time.Minute), t0.Add(2*time.Minute)); !ok || pos != "7" {
		t.Fatalf("claim after the lease lapsed: %q %v", pos, ok)
	}
	for _, bad := range []string{"x", "-1", "1/2"} {
		if _, err := s.ReadLog(ctx, bad, 10); err == nil {
			t.Errorf("ReadLog(%q) accepted", bad)
		}
	}
}
