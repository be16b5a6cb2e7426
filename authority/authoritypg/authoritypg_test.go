package authoritypg_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

var ctx = context.Background()

func newStore(t testing.TB, opts ...authoritypg.Option) *authoritypg.Store {
	t.Helper()
	s := authoritypg.New(pgtest.Pool(t), opts...)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// TestConformance runs the store conformance suite (A-STAT-2, A-VAL-5..8,
// A-AUTHZ-3, A-AUTHZ-4, G-1, G-16) on PostgreSQL.
func TestConformance(t *testing.T) {
	authoritytest.TestStore(t, func(t *testing.T) authority.Store { return newStore(t) })
}

var (
	t0   = authoritytest.T0
	svcA = "https://a.example.com"
)

// approved stores an approved request for svcA whose pass (hash) lives until
// t0+1h.
func approved(t testing.TB, s authority.Store, id, hash string) *authority.Request {
	t.Helper()
	r := authoritytest.NewRequest(id)
	r.Status = pass.StatusApproved
	e := authoritytest.Approval("tickets:read")
	e.PassExpiresAt = t0.Add(time.Hour)
	e.AuthorizationExpiresAt = t0.Add(2 * time.Hour)
	r.Decision = &e
	r.PassHash = hash
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatalf("CreateRequest: %v", err)
	}
	return r
}

// TestMigrate: migrations are idempotent and may run from several replicas
// at once.
func TestMigrate(t *testing.T) {
	pool := pgtest.Pool(t)
	stores := []*authoritypg.Store{authoritypg.New(pool), authoritypg.New(pgtest.SharedPool(t, pool))}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- stores[i%2].Migrate(ctx) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	approved(t, stores[0], "r1", "h1")
	if err := stores[1].Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if _, err := stores[1].Request(ctx, "msn_r1"); err != nil {
		t.Fatalf("row lost by a second Migrate: %v", err)
	}
	files, err := fs.Glob(authoritypg.Migrations, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var versions int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM agentpass_schema_migrations WHERE component = 'authority'`).Scan(&versions); err != nil || versions != len(files) {
		t.Fatalf("recorded migrations: %d, %v; want %d", versions, err, len(files))
	}
}

// TestRoundTrip: nil and empty values, zero times and JSON bytes come back
// as stored (no EquateEmpty here, unlike the conformance suite).
func TestRoundTrip(t *testing.T) {
	s := newStore(t)
	r := authoritytest.NewRequest("r1")
	r.AvailableScope = nil
	r.ProposedScope = pass.Scope{}
	r.Cnf = json.RawMessage(`{"kty": "OKP",  "crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`)
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Request(ctx, "msn_r1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	if got.AvailableScope != nil || got.ProposedScope == nil || got.Decision != nil || !got.ConsumedAt.IsZero() {
		t.Errorf("nil/empty not preserved: %+v", got)
	}
}

// TestTimePrecision: PostgreSQL keeps microseconds; truncation errs on the
// side of expired, never the other way.
func TestTimePrecision(t *testing.T) {
	s := newStore(t)
	r := authoritytest.NewRequest("r1")
	r.Status = pass.StatusApproved
	e := authoritytest.Approval("tickets:read")
	e.PassExpiresAt = t0.Add(time.Minute + 500*time.Nanosecond)
	r.Decision = &e
	r.PassHash = "h1"
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	_, err := s.ConsumePass(ctx, "h1", svcA, "z1", t0.Add(time.Minute+100*time.Nanosecond))
	if !errors.Is(err, authority.ErrExpired) {
		t.Fatalf("consume within the expiring microsecond = %v, want ErrExpired (fail closed)", err)
	}
	if _, err := s.ConsumePass(ctx, "h1", svcA, "z1", t0.Add(time.Minute-time.Microsecond)); err != nil {
		t.Fatalf("consume a microsecond before expiry: %v", err)
	}
}

// TestConsumeConflictingAuthorizationID: a taken authorization id fails the
// consumption as a whole; the pass stays redeemable.
func TestConsumeConflictingAuthorizationID(t *testing.T) {
	s := newStore(t)
	approved(t, s, "r1", "h1")
	approved(t, s, "r2", "h2")
	if _, err := s.ConsumePass(ctx, "h1", svcA, "z1", t0); err != nil {
		t.Fatal(err)
	}
	_, err := s.ConsumePass(ctx, "h2", svcA, "z1", t0)
	if !errors.Is(err, authority.ErrConflict) {
		t.Fatalf("consume with a taken authorization id = %v, want ErrConflict", err)
	}
	if r, _ := s.Request(ctx, "msn_r2"); !r.ConsumedAt.IsZero() {
		t.Fatal("refused consumption consumed the pass")
	}
	if _, err := s.ConsumePass(ctx, "h2", svcA, "z2", t0); err != nil {
		t.Fatalf("pass unusable after a refused consumption: %v", err)
	}
	// The same pass hash twice is a conflict too.
	r := authoritytest.NewRequest("r3")
	r.PassHash = "h2"
	if err := s.CreateRequest(ctx, r); !errors.Is(err, authority.ErrConflict) {
		t.Fatalf("CreateRequest with a taken pass hash = %v, want ErrConflict", err)
	}
	approved(t, s, "r4", "h4")
	if _, err := s.RotatePass(ctx, "msn_r4", "h1", t0); !errors.Is(err, authority.ErrConflict) {
		t.Fatalf("RotatePass to a taken hash = %v, want ErrConflict", err)
	}
}

// twoReplicas returns two stores on two pools sharing one schema: two
// Authority replicas.
func twoReplicas(t *testing.T) (*authoritypg.Store, *authoritypg.Store) {
	pools := pgtest.Replicas(t, 2, false)
	s1, s2 := authoritypg.New(pools[0]), authoritypg.New(pools[1])
	if err := s1.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s1, s2
}

// TestReplicasConsumeOnce: 100 goroutines over two replicas present one
// pass; exactly one consumes it (A-VAL-8 across replicas), and of 100
// decisions on one request over two replicas exactly one wins.
func TestReplicasConsumeOnce(t *testing.T) {
	s1, s2 := twoReplicas(t)
	stores := []authority.Store{s1, s2}
	approved(t, s1, "r1", "h1")
	if err := s2.CreateRequest(ctx, authoritytest.NewRequest("p1")); err != nil {
		t.Fatal(err)
	}
	var consumed, decided, refused atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 100 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, err := stores[i%2].ConsumePass(ctx, "h1", svcA, fmt.Sprintf("z%d", i), t0.Add(time.Minute))
			switch {
			case err == nil:
				consumed.Add(1)
			case errors.Is(err, authority.ErrConsumed):
				refused.Add(1)
			default:
				t.Errorf("ConsumePass: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			e := authoritytest.Approval("tickets:read")
			e.DecidedBy = fmt.Sprintf("human:%d", i)
			_, err := authoritytest.DecideRequest(stores[(i+1)%2], "p1", e, t0.Add(time.Minute))
			switch {
			case err == nil:
				decided.Add(1)
			case !errors.Is(err, authority.ErrNotPending):
				t.Errorf("DecideRequest: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if consumed.Load() != 1 || refused.Load() != 99 {
		t.Errorf("consumptions %d, ErrConsumed %d; want 1, 99", consumed.Load(), refused.Load())
	}
	if decided.Load() != 1 {
		t.Errorf("decisions won: %d, want 1", decided.Load())
	}
	list, _ := s2.Authorizations(ctx, authority.ListOptions{Now: t0.Add(time.Minute)})
	if len(list) != 1 {
		t.Errorf("%d authorizations, want 1", len(list))
	}
}

// TestReplicasRevoke: a revocation through one replica is seen by the
// other at once, and cascades to children created through it.
func TestReplicasRevoke(t *testing.T) {
	s1, s2 := twoReplicas(t)
	approved(t, s1, "r1", "h1")
	parent, err := s1.ConsumePass(ctx, "h1", svcA, "parent", t0)
	if err != nil {
		t.Fatal(err)
	}
	child := authoritytest.NewRequest("r2")
	child.Status = pass.StatusApproved
	e := authoritytest.Approval("tickets:read")
	child.Decision = &e
	child.PassHash = "h2"
	child.ParentMissionID = parent.Mission.MissionID
	if err := s2.CreateRequest(ctx, child); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.ConsumePass(ctx, "h2", svcA, "child", t0); err != nil {
		t.Fatal(err)
	}
	grand := authoritytest.NewRequest("r3")
	grand.Status = pass.StatusApproved
	grand.Decision = &e
	grand.PassHash = "h3"
	grand.ParentMissionID = child.MissionID
	if err := s2.CreateRequest(ctx, grand); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.ConsumePass(ctx, "h3", svcA, "grandchild", t0); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Minute)
	live := []pass.DelegationState{pass.DelegationActive, pass.DelegationSuspended}
	if _, err := authoritytest.UpdateAuthorization(s1, "parent", authoritytest.AuthUpdate{From: live, To: pass.DelegationRevoked, By: "op"}, now); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"parent", "child", "grandchild"} {
		a, err := s2.Authorization(ctx, id)
		if err != nil || a.State != pass.DelegationRevoked || !a.ClosedAt.Equal(now) {
			t.Errorf("%s seen by the other replica: %+v, %v", id, a, err)
		}
	}
}

// TestPruneRacesTransition: a transition that holds a due mission's row
// while Prune waits for it (a lazy expiry writing its history record)
// commits a record Prune's first statement cannot see; the record must go
// with the mission all the same, not outlive it with nothing to delete it
// (the history has no foreign key since migration 010). Found by review.
func TestPruneRacesTransition(t *testing.T) {
	pool := pgtest.Pool(t)
	now := t0.Add(3 * time.Hour)
	s := authoritypg.New(pool, authoritypg.WithRetention(30*time.Minute), authoritypg.WithClock(func() time.Time { return now }))
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRequest(ctx, authoritytest.NewRequest("due")); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var holder uint32
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM agentpass_authority_requests WHERE id = 'msn_due' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO agentpass_authority_mission_history (mission_id, seq, body, hash)
		VALUES ('msn_due', 1000, '\x7b7d', 'h')`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Prune(ctx, now, 100)
		done <- result{n, err}
	}()
	// Commit once Prune waits for the row.
	for {
		var waiting int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))`, holder).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("Prune returned without waiting for the held row: %d, %v", r.n, r.err)
		default:
		}
		runtime.Gosched()
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.n != 1 {
		t.Fatalf("Prune = %d, %v; want the due request", r.n, r.err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM agentpass_authority_mission_history WHERE mission_id = 'msn_due'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d history records outlived their pruned mission", left)
	}
}

// TestPrune: only records that ended more than the retention ago go, at
// most limit per table per call; the janitor stops with its context.
func TestPrune(t *testing.T) {
	pool := pgtest.Pool(t)
	now := t0.Add(3 * time.Hour)
	ticks := pgtest.NewTicks() // the janitor's ticks, from its log
	s := authoritypg.New(pool, authoritypg.WithRetention(30*time.Minute), authoritypg.WithClock(func() time.Time { return now }), authoritypg.WithLogger(ticks.Logger()))
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Ended long ago: expired pending requests, a consumed pass whose
	// authorization expired at t0+2h.
	for i := range 5 {
		r := authoritytest.NewRequest(fmt.Sprintf("old-%d", i))
		if err := s.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	approved(t, s, "consumed", "hc")
	if _, err := s.ConsumePass(ctx, "hc", svcA, "expired-authz", t0); err != nil {
		t.Fatal(err)
	}
	// Still live or ended recently.
	fresh := authoritytest.NewRequest("fresh")
	fresh.CreatedAt, fresh.ExpiresAt = now, now.Add(time.Minute)
	if err := s.CreateRequest(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	recent := authoritytest.NewRequest("recent")
	recent.ExpiresAt = now.Add(-10 * time.Minute)
	if err := s.CreateRequest(ctx, recent); err != nil {
		t.Fatal(err)
	}
	long := authoritytest.NewRequest("long-authz")
	long.Status = pass.StatusApproved
	e := authoritytest.Approval("tickets:read")
	e.PassExpiresAt, e.AuthorizationExpiresAt = now.Add(time.Hour), now.Add(24*time.Hour)
	long.Decision = &e
	long.PassHash = "hl"
	if err := s.CreateRequest(ctx, long); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumePass(ctx, "hl", svcA, "live-authz", t0); err != nil {
		t.Fatal(err)
	}
	// Ended: 5 old pending requests and the consumed one whose delegation
	// expired (a redeemed mission lives as long as its authorization, so
	// "long-authz" stays), 1 authorization. At most 3 per table.
	n, err := s.Prune(ctx, now, 3)
	if err != nil || n != 4 {
		t.Fatalf("Prune(limit 3) = %d, %v; want 3 requests + 1 authorization", n, err)
	}
	n, err = s.Prune(ctx, now, 100)
	if err != nil || n != 3 {
		t.Fatalf("second Prune = %d, %v; want the 3 remaining ended requests", n, err)
	}
	if n, _ := s.Prune(ctx, now, 100); n != 0 {
		t.Fatalf("third Prune deleted %d", n)
	}
	for _, id := range []string{"fresh", "recent", "long-authz"} {
		if _, err := s.Request(ctx, "msn_"+id); err != nil {
			t.Errorf("request %s pruned: %v", id, err)
		}
	}
	if _, err := s.Authorization(ctx, "live-authz"); err != nil {
		t.Errorf("live authorization pruned: %v", err)
	}
	// A pruned mission's history goes with it (the table has no foreign
	// key since migration 010; Prune deletes both in one transaction), and
	// a kept mission's stays.
	var orphans, kept int
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE r.id IS NULL), count(*) FILTER (WHERE h.mission_id = 'msn_long-authz')
		FROM agentpass_authority_mission_history h
		LEFT JOIN agentpass_authority_requests r ON r.id = h.mission_id`).Scan(&orphans, &kept); err != nil {
		t.Fatal(err)
	}
	if orphans != 0 || kept == 0 {
		t.Errorf("after Prune: %d history records of pruned missions, %d of a kept one; want 0 and some", orphans, kept)
	}
	if _, err := s.Authorization(ctx, "expired-authz"); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("expired authorization kept: %v", err)
	}

	// The janitor prunes with the store's clock and stops with ctx.
	now = now.Add(2 * time.Hour) // "recent" and "fresh" have ended now
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	mark := ticks.Mark()
	go func() { done <- s.RunJanitor(jctx, 10*time.Millisecond) }()
	ticks.WaitCaughtUp(t, mark)
	if _, err := s.Request(ctx, "msn_recent"); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("janitor caught up but did not prune: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunJanitor = %v, want context.Canceled", err)
	}
}

// TestJanitorCatchesUp: one janitor tick deletes 5,000 ended requests and
// 5,000 ended authorizations, five times the per-statement batch (the old
// janitor deleted one batch a minute and fell behind for good).
func TestJanitorCatchesUp(t *testing.T) {
	pool := pgtest.Pool(t)
	ticks := pgtest.NewTicks()
	now := t0.Add(3 * time.Hour)
	s := authoritypg.New(pool, authoritypg.WithClock(func() time.Time { return now }), authoritypg.WithLogger(ticks.Logger()))
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for _, q := range []string{
		`INSERT INTO agentpass_authority_requests (id, id_hash, status, ends_at) SELECT 'r-' || i, 'h-' || i, 'expired', $2 FROM generate_series(1, $1) AS i`,
		`INSERT INTO agentpass_authority_authorizations (id, state, ends_at) SELECT 'a-' || i, 'expired', $2 FROM generate_series(1, $1) AS i`,
	} {
		if _, err := pool.Exec(ctx, q, n, t0); err != nil {
			t.Fatal(err)
		}
	}
	live := authoritytest.NewRequest("live")
	live.CreatedAt, live.ExpiresAt = now, now.Add(time.Minute)
	if err := s.CreateRequest(ctx, live); err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.RunJanitor(jctx, time.Hour) }()
	got := ticks.Wait(t, 0, 1)
	cancel()
	<-done
	if got[0] != 2*n {
		t.Errorf("first tick deleted %d rows, want %d", got[0], 2*n)
	}
	var reqs, authzs int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM agentpass_authority_requests), (SELECT count(*) FROM agentpass_authority_authorizations)`).Scan(&reqs, &authzs); err != nil {
		t.Fatal(err)
	}
	if reqs != 1 || authzs != 0 {
		t.Errorf("after one tick: %d requests, %d authorizations; want the live 1, 0", reqs, authzs)
	}
}
