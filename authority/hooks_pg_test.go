package authority_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

// Two replicas on one PostgreSQL database run the same hook consumer:
// every event is delivered once between them, in order per mission, and
// when the replica holding the lease stops, the other goes on from where
// it stopped (issue #16 item 3).
func TestRunHooksOnceAcrossReplicas(t *testing.T) {
	e, b, _ := pgReplicas(t)
	sink := newHookSink()
	var mu sync.Mutex
	by := map[string]int{} // mission:seq -> deliveries
	handler := func(replica string) func(context.Context, authority.HookEvent) error {
		return func(c context.Context, ev authority.HookEvent) error {
			mu.Lock()
			by[fmt.Sprint(ev.MissionID, ":", ev.Entry.Seq)]++
			mu.Unlock()
			return sink.handle(c, ev)
		}
	}
	actxA, stopA := context.WithCancel(ctx)
	doneA := make(chan error, 1)
	go func() {
		doneA <- e.auth.RunHooks(actxA, authority.Hooks{Name: "slack", Poll: 20 * time.Millisecond, Handle: handler("a")})
	}()
	runHooks(t, b, authority.Hooks{Name: "slack", Poll: 20 * time.Millisecond, Handle: handler("b")})

	var missions []string
	for i := range 3 {
		h := e.plainHarness()
		h.req.Task.ID = fmt.Sprint("task-", i)
		_, st := e.issue(h.req)
		missions = append(missions, st.Mission.ID)
	}
	for _, m := range missions {
		sink.waitTypes(t, m, "requested", "approved")
	}
	stopA()
	if err := <-doneA; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunHooks: %v", err)
	}
	if _, err := e.auth.Revoke(ctx, missions[0], "human:lee", "done"); err != nil {
		t.Fatal(err)
	}
	sink.waitTypes(t, missions[0], "requested", "approved", "revoked")
	mu.Lock()
	defer mu.Unlock()
	for k, n := range by {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
}

// PostgreSQL retention per kind: decided missions and their history are
// kept forever and verify; undecided requests are pruned even when Forever
// is asked for them. The audit export pages past 1,000 missions.
func TestPruneRetentionPolicyPostgres(t *testing.T) {
	pool := pgtest.Pool(t)
	store := authoritypg.New(pool, authoritypg.WithRetentionPolicy(authority.Retention{
		Undecided: authority.Forever, Decided: authority.Forever}))
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *authority.Config) { c.Store = store })
	_, decided := e.issue(e.plainHarness().req)
	e.clock.Advance(time.Minute) // a person decides later
	if _, err := e.auth.Decide(ctx, decided.Mission.ID, authority.Decision{Outcome: authority.Deny, DecidedBy: "human:lee", Reason: "no"}); err != nil {
		t.Fatal(err)
	}
	_, flood := e.issue(e.plainHarness().req)
	n, err := store.Prune(ctx, e.clock.Now().Add(400*24*time.Hour), 0)
	if err != nil || n != 1 {
		t.Fatalf("Prune: %d %v", n, err)
	}
	if _, err := store.Request(ctx, flood.Mission.ID); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("undecided request kept: %v", err)
	}
	if err := e.auth.VerifyHistory(ctx, decided.Mission.ID); err != nil {
		t.Errorf("kept history: %v", err)
	}
	exportPastAThousand(t, e, store)
}

// exportPastAThousand stores 1,050 more missions and checks that the
// export holds every one of their "requested" entries.
func exportPastAThousand(t *testing.T, e *env, store authority.Store) {
	t.Helper()
	now := e.clock.Now()
	for i := range 1050 {
		r := &authority.Request{
			MissionID: fmt.Sprintf("%sbulk%05d", pass.MissionIDPrefix, i), IDHash: fmt.Sprintf("%064d", i),
			Status: pass.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour), Type: pass.BearerToken,
			Service: e.svc.Origin, User: userEmail, HarnessID: harnessID, TaskID: "bulk", AvailableScope: pass.Scope{"tickets:read"},
		}
		if err := store.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := e.auth.ExportAudit(ctx, &buf, now); err != nil {
		t.Fatal(err)
	}
	lines := 0
	for sc := bufio.NewScanner(&buf); sc.Scan(); {
		if bytes.Contains(sc.Bytes(), []byte(`"task":{"id":"bulk"`)) {
			lines++
		}
	}
	if lines != 1050 {
		t.Errorf("export holds %d of 1050 bulk missions", lines)
	}
}

// The same on the MemoryStore.
func TestExportAuditPagesMemory(t *testing.T) {
	store := authority.NewMemoryStore()
	e := newEnv(t, func(c *authority.Config) { c.Store = store })
	exportPastAThousand(t, e, store)
}
