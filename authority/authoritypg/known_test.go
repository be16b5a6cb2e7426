package authoritypg_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/missionlog"
	"github.com/agentpass-go/agentpass/internal/pgreplay"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

// issued stores, through s, an approved root request for svcA granting
// both ticket scopes, whose pass (hash) lives until t0+1h.
func issued(t *testing.T, s authority.Store, id, hash string) *authority.Request {
	t.Helper()
	r := authoritytest.NewRequest(id)
	r.Status = pass.StatusApproved
	e := authoritytest.Approval("tickets:read", "tickets:write")
	e.PassExpiresAt = t0.Add(time.Hour)
	e.AuthorizationExpiresAt = t0.Add(2 * time.Hour)
	r.Decision = &e
	r.PassHash = hash
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatalf("CreateRequest: %v", err)
	}
	return r
}

// replayRows counts the replay table's rows of the pair jti recordJTI
// records.
func replayRows(t *testing.T, pool *pgxpool.Pool, jti string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM agentpass_proof_replay WHERE key = $1`,
		pgreplay.Key("authority:assertion:"+svcA, jti)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// verifyHistory fails unless the mission's history chain verifies.
func verifyHistory(t *testing.T, s authority.Store, missionID string) {
	t.Helper()
	hist, err := s.History(ctx, missionID)
	if err != nil {
		t.Fatal(err)
	}
	bodies, hashes := make([][]byte, len(hist)), make([]string, len(hist))
	for j, h := range hist {
		bodies[j], hashes[j] = h.Body, h.Hash
	}
	if seq, err := missionlog.Verify(bodies, hashes); err != nil {
		t.Errorf("history of %s breaks at seq %d: %v", missionID, seq, err)
	}
}

// TestKnownPassStale (#19 item 6, A-VAL-6, A-VAL-8): a pass this store
// issued whose mission another replica changed since (suspended, revoked,
// narrowed, its pass consumed or rotated there) gets exactly the outcome
// of a consumption that reads the row: the remembered row's write applies
// to nothing, and the read and write follow. With the record folded in,
// the assertion's pair is recorded once, by the first statement, and not
// claimed again by the read.
func TestKnownPassStale(t *testing.T) {
	pools := pgtest.Replicas(t, 2, false)
	migrated(t, pools[0])
	pool, trips := pgtest.CountedPool(t, pools[0])
	s1, rc1 := migrated(t, pool)
	s2 := authoritypg.New(pools[1]) // another replica
	change := func(to pass.MissionState, scope pass.Scope) func(t *testing.T, r *authority.Request) {
		return func(t *testing.T, r *authority.Request) {
			c := authority.MissionChange{From: []pass.MissionState{pass.MissionActive}, To: to, Scope: scope, By: "human:op"}
			if to.Terminal() {
				c.Cause = pass.CauseOperator
			}
			if _, err := s2.TransitionMission(ctx, r.MissionID, c, t0.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name      string
		change    func(t *testing.T, r *authority.Request)
		wantErr   error
		wantScope pass.Scope // of the authorization, when consumed
	}{
		{name: "suspended", change: change(pass.MissionSuspended, nil), wantErr: authority.ErrNotFound},
		{name: "revoked", change: change(pass.MissionRevoked, nil), wantErr: authority.ErrNotFound},
		{name: "narrowed", change: change("", pass.Scope{"tickets:read"}), wantScope: pass.Scope{"tickets:read"}},
		{name: "consumed elsewhere", wantErr: authority.ErrConsumed, change: func(t *testing.T, r *authority.Request) {
			if _, err := s2.ConsumePass(ctx, r.PassHash, svcA, "z-other-"+r.MissionID, t0.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "rotated elsewhere", wantErr: authority.ErrNotFound, change: func(t *testing.T, r *authority.Request) {
			if _, err := s2.RotatePass(ctx, r.MissionID, "rotated-"+r.PassHash, t0.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		for _, fold := range []bool{false, true} {
			name := fmt.Sprintf("%s/fold=%v", tc.name, fold)
			t.Run(name, func(t *testing.T) {
				id := strings.NewReplacer(" ", "-", "/", "-", "=", "-").Replace(name)
				r := issued(t, s1, id, "h-"+id)
				tc.change(t, r)
				trips.Reset()
				var c *authority.Consumption
				var err error
				now := t0.Add(2 * time.Second)
				if fold {
					var got dpop.ReplayCache
					c, err = s1.ConsumePassRecorded(ctx, r.PassHash, svcA, "z-"+id, now, rc1, recordJTI("j-"+id, &got))
				} else {
					c, err = s1.ConsumePass(ctx, r.PassHash, svcA, "z-"+id, now)
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("consumption: %v, want %v", err, tc.wantErr)
				}
				n, stmts := trips.Count()
				if n < 2 || !strings.HasPrefix(stmts[0], "WITH") {
					t.Errorf("%d round trips %q, want the remembered row's write, then the read", n, stmts)
				}
				if fold {
					if rows := replayRows(t, pool, "j-"+id); rows != 1 {
						t.Errorf("%d replay rows for the assertion, want 1", rows)
					}
					for _, s := range stmts[1:] {
						if strings.Contains(s, "agentpass_proof_replay") {
							t.Errorf("the pair claimed again: %q", s)
						}
					}
				}
				if err == nil {
					if c.Authorization.ID != "z-"+id || !slices.Equal(c.Authorization.Scope, tc.wantScope) {
						t.Errorf("authorization %s with scope %v, want z-%s with %v", c.Authorization.ID, c.Authorization.Scope, id, tc.wantScope)
					}
					if a, err := s2.Authorization(ctx, "z-"+id); err != nil || !slices.Equal(a.Scope, tc.wantScope) {
						t.Errorf("stored authorization: %+v, %v", a, err)
					}
				} else if _, err := s2.Authorization(ctx, "z-"+id); !errors.Is(err, authority.ErrNotFound) {
					t.Errorf("refused, yet its authorization exists (%v)", err)
				}
				verifyHistory(t, s2, r.MissionID)
			})
		}
	}
}

// TestKnownPassReplay (#19 item 6, A-VAL-8): a replayed assertion with a
// pass this store issued is refused by the one statement that would have
// consumed the pass, and consumes nothing; a pair already expired is only
// looked up, and a free one consumes in that one statement.
func TestKnownPassReplay(t *testing.T) {
	base := pgtest.Pool(t)
	migrated(t, base)
	pool, trips := pgtest.CountedPool(t, base)
	s, rc := migrated(t, pool)
	if _, err := rc.Seen(ctx, "authority:assertion:"+svcA, "spent", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var got dpop.ReplayCache
	r := issued(t, s, "replayed", "h-replayed")
	trips.Reset()
	if _, err := s.ConsumePassRecorded(ctx, r.PassHash, svcA, "z1", t0, rc, recordJTI("spent", &got)); !errors.Is(err, errReplay) {
		t.Fatalf("replayed assertion: %v, want %v", err, errReplay)
	}
	if n, stmts := trips.Count(); n != 1 || !strings.HasPrefix(stmts[0], "WITH claim") {
		t.Errorf("%d round trips %q, want the claim and write in one", n, stmts)
	}
	if got, err := s.Request(ctx, r.MissionID); err != nil || !got.ConsumedAt.IsZero() || got.HistoryCount != r.HistoryCount {
		t.Fatalf("the replay touched the mission: %v", cmpErr(err, fmt.Errorf("consumed at %v, %d history records", got.ConsumedAt, got.HistoryCount)))
	}
	if _, err := s.Authorization(ctx, "z1"); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("the replay stored an authorization (%v)", err)
	}
	// The pass is untouched: a fresh assertion consumes it.
	if _, err := s.ConsumePassRecorded(ctx, r.PassHash, svcA, "z2", t0, rc, recordJTI("fresh", &got)); err != nil {
		t.Fatalf("after the replay: %v", err)
	}

	// An assertion whose exp has passed on the table's clock is looked up.
	expired := func(jti string) func(dpop.ReplayCache) error {
		return func(c dpop.ReplayCache) error {
			if seen, err := c.Seen(ctx, "authority:assertion:"+svcA, jti, t0.Add(-time.Second)); err != nil || seen {
				return cmpErr(err, errReplay)
			}
			return nil
		}
	}
	r = issued(t, s, "looked-up", "h-looked-up")
	trips.Reset()
	if _, err := s.ConsumePassRecorded(ctx, r.PassHash, svcA, "z3", t0, rc, expired("late")); err != nil {
		t.Fatalf("a free expired pair: %v", err)
	}
	if n, stmts := trips.Count(); n != 1 || !strings.HasPrefix(stmts[0], "WITH claim") {
		t.Errorf("%d round trips %q, want one", n, stmts)
	}
	if rows := replayRows(t, pool, "late"); rows != 0 {
		t.Errorf("an expired pair stored: %d rows", rows)
	}
	r = issued(t, s, "looked-up-spent", "h-looked-up-spent")
	if _, err := s.ConsumePassRecorded(ctx, r.PassHash, svcA, "z4", t0, rc, expired("spent")); !errors.Is(err, errReplay) {
		t.Fatalf("a held expired pair: %v, want %v", err, errReplay)
	}
	if got, err := s.Request(ctx, r.MissionID); err != nil || !got.ConsumedAt.IsZero() {
		t.Errorf("a held pair consumed the pass: %v", cmpErr(err, fmt.Errorf("consumed at %v", got.ConsumedAt)))
	}
}

// cmpErr is err, or alt when err is nil.
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// TestKnownPassRace (#19 item 6, A-VAL-8 across replicas): two replicas
// that both remember a pass's row (one issued it, the other rotated it to
// the same hash), or only one of them, validate it at once, round after
// round, with the record folded in or not (ConsumePass): exactly one
// consumes, and the other
// finds the pass consumed; with one assertion presented at both, the other
// is refused as a replay. The pass is consumed once, its history intact.
func TestKnownPassRace(t *testing.T) {
	pools := pgtest.Replicas(t, 2, false)
	s1, rc1 := migrated(t, pools[0])
	s2, rc2 := authoritypg.New(pools[1]), dpoppg.New(pools[1], dpoppg.WithClock(func() time.Time { return t0 }))
	stores := []*authoritypg.Store{s1, s2}
	caches := []*dpoppg.ReplayCache{rc1, rc2}
	const rounds = 20
	for _, tc := range []struct {
		name     string
		bothKnow bool
		sameJTI  bool
		plain    bool  // ConsumePass, no record
		wantLost error // the loser's error
	}{
		{name: "both know, no record", bothKnow: true, plain: true, wantLost: authority.ErrConsumed},
		{name: "both know", bothKnow: true, wantLost: authority.ErrConsumed},
		{name: "one knows", wantLost: authority.ErrConsumed},
		{name: "both know, one assertion", bothKnow: true, sameJTI: true, wantLost: errReplay},
		{name: "one knows, one assertion", sameJTI: true, wantLost: errReplay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range rounds {
				id := fmt.Sprintf("%s-%d", strings.NewReplacer(" ", "-", ",", "").Replace(tc.name), i)
				r := issued(t, s1, id, "h-"+id)
				if tc.bothKnow {
					if _, err := s2.RotatePass(ctx, r.MissionID, r.PassHash, t0); err != nil {
						t.Fatal(err)
					}
				}
				var wg sync.WaitGroup
				errs := make([]error, 2)
				start := make(chan struct{})
				for k := range 2 {
					wg.Go(func() {
						<-start
						jti := fmt.Sprintf("j-%s-%d", id, k)
						if tc.sameJTI {
							jti = "j-" + id
						}
						if tc.plain {
							_, errs[k] = stores[k].ConsumePass(context.Background(), r.PassHash, svcA, fmt.Sprintf("z-%s-%d", id, k), t0.Add(time.Second))
							return
						}
						var got dpop.ReplayCache
						_, errs[k] = stores[k].ConsumePassRecorded(context.Background(), r.PassHash, svcA, fmt.Sprintf("z-%s-%d", id, k),
							t0.Add(time.Second), caches[k], recordJTI(jti, &got))
					})
				}
				close(start)
				wg.Wait()
				won := 0
				for _, err := range errs {
					switch {
					case err == nil:
						won++
					case !errors.Is(err, tc.wantLost):
						t.Errorf("round %d: %v, want %v", i, err, tc.wantLost)
					}
				}
				if won != 1 {
					t.Fatalf("round %d: %d consumptions (%v), want exactly 1", i, won, errs)
				}
				list, err := s1.Authorizations(ctx, authority.ListOptions{Now: t0.Add(time.Second), Limit: 1000})
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, a := range list {
					if a.MissionID == r.MissionID {
						n++
					}
				}
				if n != 1 {
					t.Errorf("round %d: %d authorizations of the mission, want 1", i, n)
				}
				verifyHistory(t, s1, r.MissionID)
			}
		})
	}
}

// TestKnownPassNoAlias (#19 item 6): the row a store remembers is its own
// copy: changing the Request a caller handed to CreateRequest, or the one
// RotatePass returned, changes nothing about the consumption.
func TestKnownPassNoAlias(t *testing.T) {
	base := pgtest.Pool(t)
	migrated(t, base)
	pool, trips := pgtest.CountedPool(t, base)
	s, _ := migrated(t, pool)
	spoil := func(r *authority.Request) {
		r.Service = "https://evil.example"
		r.Scope[0] = "admin"
		r.Decision.Scope[0] = "admin"
		r.Decision.PassExpiresAt = t0
		r.HistoryCount += 7
		r.State = pass.MissionRevoked
	}
	created := issued(t, s, "created", "h-created")
	spoil(created)
	rot := issued(t, authoritypg.New(base), "rotated", "h-before")
	rotated, err := s.RotatePass(ctx, rot.MissionID, "h-rotated", t0)
	if err != nil {
		t.Fatal(err)
	}
	spoil(rotated)
	for _, h := range []string{"h-created", "h-rotated"} {
		trips.Reset()
		c, err := s.ConsumePass(ctx, h, svcA, "z-"+h, t0.Add(time.Second))
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		if n, stmts := trips.Count(); n != 1 {
			t.Errorf("%s: %d round trips %q, want the remembered row's write alone", h, n, stmts)
		}
		if c.Authorization.Service != svcA || !slices.Equal(c.Authorization.Scope, pass.Scope{"tickets:read", "tickets:write"}) {
			t.Errorf("%s: authorization %+v", h, c.Authorization)
		}
	}
}

// TestKnownPassTransitionHere (#19 item 6, A-VAL-6): a mission this store
// itself suspends, or whose pass it rotates, forgets its remembered row
// (the rotation remembers the new one), so the refusal costs the read
// alone, as for any pass, and not a write that applies to nothing first.
func TestKnownPassTransitionHere(t *testing.T) {
	base := pgtest.Pool(t)
	migrated(t, base)
	pool, trips := pgtest.CountedPool(t, base)
	s, _ := migrated(t, pool)
	r := issued(t, s, "suspended-here", "h-suspended-here")
	if _, err := s.TransitionMission(ctx, r.MissionID, authority.MissionChange{
		From: []pass.MissionState{pass.MissionActive}, To: pass.MissionSuspended, By: "human:op",
	}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	trips.Reset()
	if _, err := s.ConsumePass(ctx, r.PassHash, svcA, "z1", t0.Add(2*time.Second)); !errors.Is(err, authority.ErrNotFound) {
		t.Fatalf("a suspended mission's pass: %v, want %v", err, authority.ErrNotFound)
	}
	if n, stmts := trips.Count(); n != 1 || !strings.HasPrefix(stmts[0], "SELECT") {
		t.Errorf("%d round trips %q, want the read alone", n, stmts)
	}

	r = issued(t, s, "rotated-here", "h-before")
	if _, err := s.RotatePass(ctx, r.MissionID, "h-after", t0); err != nil {
		t.Fatal(err)
	}
	trips.Reset()
	if _, err := s.ConsumePass(ctx, "h-before", svcA, "z2", t0.Add(time.Second)); !errors.Is(err, authority.ErrNotFound) {
		t.Fatalf("a rotated-away pass: %v, want %v", err, authority.ErrNotFound)
	}
	if n, stmts := trips.Count(); n != 1 || !strings.HasPrefix(stmts[0], "SELECT") {
		t.Errorf("rotated-away pass: %d round trips %q, want the read alone", n, stmts)
	}
	trips.Reset()
	if _, err := s.ConsumePass(ctx, "h-after", svcA, "z3", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, stmts := trips.Count(); n != 1 || !strings.HasPrefix(stmts[0], "WITH") {
		t.Errorf("rotated pass: %d round trips %q, want the write alone", n, stmts)
	}
}
