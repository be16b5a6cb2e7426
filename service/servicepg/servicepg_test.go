package servicepg_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/internal/pgutil"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicepg"
	"github.com/agentpass-go/agentpass/service/servicetest"
)

var ctx = context.Background()

func newStore(t testing.TB) *servicepg.Store {
	t.Helper()
	s := servicepg.New(pgtest.Pool(t))
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// TestConformance runs the service store conformance suite (S-BRW-3,
// S-BRW-4, S-BRW-8, S-BRW-11, S-BRW-12, S-AUTHZ-5, S-AUTHZ-6, S-AUTHZ-8,
// G-3, G-15) on PostgreSQL.
func TestConformance(t *testing.T) {
	servicetest.TestStore(t, func(t *testing.T) service.Store { return newStore(t) })
}

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func delegation(id string) *service.DelegationRecord {
	return &service.DelegationRecord{
		AuthorizationID: id, Authority: "https://idp.example.com", ConfigurationURL: "https://idp.example.com/ap",
		TrustMode: pass.TrustEnterprise, User: "alex@example.com", Agent: "agent-1",
		Scope: pass.Scope{"tickets:read"}, CurrentScope: pass.Scope{"tickets:read"},
		ExpiresAt: base.Add(2 * time.Hour), CreatedAt: base, CheckedAt: base,
	}
}

func bearer(id, hash string, exp time.Time) *service.CredentialRecord {
	return &service.CredentialRecord{Hash: hash, Kind: service.KindBearer, AuthorizationID: id,
		Scope: pass.Scope{"tickets:read"}, CreatedAt: base, ExpiresAt: exp}
}

func initToken(id, hash string, exp time.Time) *service.InitRecord {
	return &service.InitRecord{Hash: hash, AuthorizationID: id, Scope: pass.Scope{"tickets:read"},
		Destination: "https://app.example.com/", CreatedAt: base, ExpiresAt: exp}
}

// twoReplicas returns two stores on two pools sharing one schema: two
// Service replicas.
func twoReplicas(t *testing.T) (*servicepg.Store, *servicepg.Store) {
	pools := pgtest.Replicas(t, 2, false)
	s1, s2 := servicepg.New(pools[0]), servicepg.New(pools[1])
	if err := s1.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s1, s2
}

// TestMigrate: migrations are idempotent and may run from several replicas
// at once.
func TestMigrate(t *testing.T) {
	s1, s2 := twoReplicas(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- []*servicepg.Store{s1, s2}[i%2].Migrate(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	if err := s1.Redeem(ctx, delegation("a1"), bearer("a1", "c1", base.Add(time.Hour)), nil); err != nil {
		t.Fatal(err)
	}
	if err := s2.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if _, err := s2.Delegation(ctx, "a1"); err != nil {
		t.Fatalf("row lost by a second Migrate: %v", err)
	}
}

// TestRoundTrip: nil and empty scopes and zero times come back as stored;
// an expiry recorded by a check may set a missing one.
func TestRoundTrip(t *testing.T) {
	s := newStore(t)
	d := delegation("a1")
	d.Scope, d.CurrentScope, d.ExpiresAt = pass.Scope{}, nil, time.Time{}
	c := bearer("a1", "c1", base.Add(time.Hour))
	c.Scope = nil
	if err := s.Redeem(ctx, d, c, nil); err != nil {
		t.Fatal(err)
	}
	gotC, gotD, err := s.Credential(ctx, "c1", base)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, gotD); diff != "" {
		t.Errorf("delegation (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(c, gotC); diff != "" {
		t.Errorf("credential (-want +got):\n%s", diff)
	}
	if gotD.Scope == nil || gotD.CurrentScope != nil || gotC.Scope != nil {
		t.Errorf("nil/empty not preserved: %#v %#v %#v", gotD.Scope, gotD.CurrentScope, gotC.Scope)
	}
	if err := s.RecordCheck(ctx, "a1", base.Add(time.Minute), pass.Scope{"x"}, base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A check older than the last one does not move CheckedAt back.
	if err := s.RecordCheck(ctx, "a1", base, pass.Scope{"x"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Delegation(ctx, "a1")
	if !got.ExpiresAt.Equal(base.Add(time.Hour)) || !got.CheckedAt.Equal(base.Add(time.Minute)) {
		t.Errorf("after checks: expires %v checked %v", got.ExpiresAt, got.CheckedAt)
	}
}

// TestReplicas: two Service replicas on two pools share single use and
// invalidation. 20 concurrent ConsumeInit of one token over both → one
// success (S-BRW-8); 20 concurrent Redeem of one authorization id → one;
// an invalidation made
// through one replica is seen by the other at its next lookup (S-AUTHZ-6).
func TestReplicas(t *testing.T) {
	s1, s2 := twoReplicas(t)
	stores := []*servicepg.Store{s1, s2}
	if err := s1.Redeem(ctx, delegation("a1"), nil, initToken("a1", "i1", base.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var inits, redeemed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(2)
		s := stores[i%2]
		go func() {
			defer wg.Done()
			<-start
			_, err := s.ConsumeInit(ctx, "i1", base)
			switch {
			case err == nil:
				inits.Add(1)
			case !errors.Is(err, service.ErrInitUsed):
				t.Errorf("ConsumeInit: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			err := s.Redeem(ctx, delegation("a2"), bearer("a2", fmt.Sprintf("c%d", i), base.Add(time.Hour)), nil)
			switch {
			case err == nil:
				redeemed.Add(1)
			case !errors.Is(err, service.ErrConflict):
				t.Errorf("Redeem: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if inits.Load() != 1 || redeemed.Load() != 1 {
		t.Fatalf("successes: ConsumeInit %d, Redeem %d; want 1 each", inits.Load(), redeemed.Load())
	}
	sess := bearer("a1", "session-1", base.Add(time.Hour))
	sess.Kind = service.KindSession
	if err := s2.AddCredential(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if _, d, err := s1.Credential(ctx, "session-1", base); err != nil || d.Invalidated {
		t.Fatalf("session before invalidation: %+v, %v", d, err)
	}
	if err := s1.Invalidate(ctx, "a1", base.Add(time.Minute), "revoked"); err != nil {
		t.Fatal(err)
	}
	if _, d, err := s2.Credential(ctx, "session-1", base.Add(2*time.Minute)); err != nil || !d.Invalidated || d.InvalidReason != "revoked" {
		t.Fatalf("other replica after invalidation: %+v, %v", d, err)
	}
}

// TestPrune: expired credentials go at once, initialization
// tokens ten minutes after their expiry, and a delegation when nothing
// refers to it any more; at most limit rows per table per call.
func TestPrune(t *testing.T) {
	pool := pgtest.Pool(t)
	now := base.Add(3 * time.Hour)
	ticks := pgtest.NewTicks() // the janitor's ticks, from its log
	s := servicepg.New(pool, servicepg.WithClock(func() time.Time { return now }), servicepg.WithLogger(ticks.Logger()))
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// a1: one expired token, one live session -> the delegation stays.
	if err := s.Redeem(ctx, delegation("a1"), bearer("a1", "a1-old", base.Add(time.Hour)), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCredential(ctx, bearer("a1", "a1-live", now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	// a2..a4: only expired tokens -> delegations go with them.
	for i := 2; i <= 4; i++ {
		id := fmt.Sprintf("a%d", i)
		if err := s.Redeem(ctx, delegation(id), bearer(id, id+"-old", base.Add(time.Hour)), nil); err != nil {
			t.Fatal(err)
		}
	}
	// i1: init token expired 5 minutes ago (kept); i2: an hour ago (goes).
	if err := s.Redeem(ctx, delegation("i1"), nil, initToken("i1", "i1", now.Add(-5*time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := s.Redeem(ctx, delegation("i2"), nil, initToken("i2", "i2", now.Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	// Limit 2: 2 credentials, 1 init token, their orphaned delegations.
	n, err := s.Prune(ctx, now, 2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Prune(ctx, now, 100)
	if err != nil {
		t.Fatal(err)
	}
	// 4 expired credentials + 1 init token + 4 delegations (a2, a3, a4, i2).
	if n+m != 9 || n > 2+1+2+1 {
		t.Fatalf("Prune deleted %d then %d rows; want 10 in all, bounded per table", n, m)
	}
	if k, _ := s.Prune(ctx, now, 100); k != 0 {
		t.Fatalf("third Prune deleted %d", k)
	}
	for _, id := range []string{"a1", "i1"} {
		if _, err := s.Delegation(ctx, id); err != nil {
			t.Errorf("delegation %s pruned: %v", id, err)
		}
	}
	for _, id := range []string{"a2", "a3", "a4", "i2"} {
		if _, err := s.Delegation(ctx, id); !errors.Is(err, service.ErrNotFound) {
			t.Errorf("orphaned delegation %s kept: %v", id, err)
		}
	}
	if _, _, err := s.Credential(ctx, "a1-live", now); err != nil {
		t.Errorf("live credential pruned: %v", err)
	}
	if _, err := s.ConsumeInit(ctx, "i1", now); !errors.Is(err, service.ErrInitExpired) {
		t.Errorf("recently expired init token: %v, want ErrInitExpired", err)
	}

	now = now.Add(time.Hour)
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	mark := ticks.Mark()
	go func() { done <- s.RunJanitor(jctx, 10*time.Millisecond) }()
	ticks.WaitCaughtUp(t, mark)
	if _, err := s.Delegation(ctx, "i1"); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("janitor caught up but did not prune: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunJanitor = %v, want context.Canceled", err)
	}
}

// TestMigrateDropsProofs: a database at schema version 1, with rows in
// every table including the old proofs table, upgrades: the proofs table
// is gone (jtis now live in dpoppg's table) and every other row is kept.
func TestMigrateDropsProofs(t *testing.T) {
	pool := pgtest.Pool(t)
	ms, err := pgutil.LoadMigrations(servicepg.Migrations, "migrations")
	if err != nil || len(ms) < 2 {
		t.Fatalf("LoadMigrations = %d migrations, %v", len(ms), err)
	}
	if err := pgutil.Migrate(ctx, pool, "service", ms[:1]); err != nil {
		t.Fatal(err)
	}
	s := servicepg.New(pool)
	// Rows as the code of schema version 1 wrote them (today's Redeem
	// writes columns of later migrations).
	for _, q := range []string{
		`INSERT INTO agentpass_service_delegations (authorization_id, authority, scope, current_scope, created_at, checked_at)
			VALUES ('a1', 'https://idp.example', '{x}', '{x}', $1, $1), ('a2', 'https://idp.example', '{x}', '{x}', $1, $1)`,
		`INSERT INTO agentpass_service_credentials (hash, kind, authorization_id, scope, created_at, expires_at)
			VALUES ('c1', 'bearer', 'a1', '{x}', $1, $1::timestamptz + interval '1 hour')`,
		`INSERT INTO agentpass_service_init_tokens (hash, authorization_id, scope, created_at, expires_at)
			VALUES ('i1', 'a2', '{x}', $1, $1::timestamptz + interval '1 minute')`,
	} {
		if _, err := pool.Exec(ctx, q, base); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO agentpass_service_proofs (key, expires_at) VALUES ('\x01', $1)`, base); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var gone bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('agentpass_service_proofs') IS NULL`).Scan(&gone); err != nil || !gone {
		t.Fatalf("proofs table still there: %v, %v", gone, err)
	}
	if _, d, err := s.Credential(ctx, "c1", base); err != nil || d.AuthorizationID != "a1" || d.MissionID != "" || d.MissionVersion != 0 {
		t.Errorf("credential after the upgrade: %+v, %v", d, err)
	}
	if r, err := s.ConsumeInit(ctx, "i1", base); err != nil || r.AuthorizationID != "a2" {
		t.Errorf("init token after the upgrade: %+v, %v", r, err)
	}
	var version int
	if err := pool.QueryRow(ctx, `SELECT max(version) FROM agentpass_schema_migrations WHERE component = 'service'`).Scan(&version); err != nil || version != len(ms) {
		t.Errorf("schema version %d, %v; want %d", version, err, len(ms))
	}
}

// TestJanitorCatchesUp: one janitor tick deletes 5,000 expired credentials
// and their delegations, five times the per-statement batch (the old
// janitor deleted one batch a minute and fell behind for good).
func TestJanitorCatchesUp(t *testing.T) {
	pool := pgtest.Pool(t)
	ticks := pgtest.NewTicks()
	s := servicepg.New(pool, servicepg.WithClock(func() time.Time { return base }), servicepg.WithLogger(ticks.Logger()))
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	if _, err := pool.Exec(ctx, `
		WITH d AS (
			INSERT INTO agentpass_service_delegations (authorization_id)
			SELECT 'old-' || i FROM generate_series(1, $1) AS i RETURNING authorization_id
		)
		INSERT INTO agentpass_service_credentials (hash, kind, authorization_id, created_at, expires_at)
		SELECT 'h-' || authorization_id, 'bearer', authorization_id, $2, $2 FROM d`, n, base.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Redeem(ctx, delegation("live"), bearer("live", "live", base.Add(time.Hour)), nil); err != nil {
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
	var creds, dels int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM agentpass_service_credentials), (SELECT count(*) FROM agentpass_service_delegations)`).Scan(&creds, &dels); err != nil {
		t.Fatal(err)
	}
	if creds != 1 || dels != 1 {
		t.Errorf("after one tick: %d credentials, %d delegations; want the live 1, 1", creds, dels)
	}
}
