package servicepg_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

var errReplayed = errors.New("test: replayed")

// claim is the record callback a Service passes: it records one pair with
// the cache it is given.
func claim(issuer, jti string, exp time.Time) func(dpop.ReplayCache) error {
	return func(c dpop.ReplayCache) error {
		replayed, err := c.Seen(ctx, issuer, jti, exp)
		if err != nil {
			return err
		}
		if replayed {
			return errReplayed
		}
		return nil
	}
}

// recordingReplica returns a store and the dpoppg cache on its pool, both
// migrated, the cache on the clock now.
func recordingReplica(t *testing.T, pool *pgxpool.Pool, now func() time.Time) (*servicepg.Store, *dpoppg.ReplayCache) {
	t.Helper()
	s, rc := servicepg.New(pool), dpoppg.New(pool, dpoppg.WithClock(now))
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s, rc
}

// wrote reports whether the delegation and the credential or init token
// of id exist.
func wrote(t *testing.T, s *servicepg.Store, id, hash string) bool {
	t.Helper()
	_, derr := s.Delegation(ctx, id)
	_, _, cerr := s.Credential(ctx, hash, base)
	if (derr == nil) != (cerr == nil) {
		t.Fatalf("%s: delegation %v, credential %v: only half written", id, derr, cerr)
	}
	return derr == nil
}

// TestRedeemRecorded: the harness proof's replay record folded into
// Redeem's statement (#19 item 6) stores the pair as dpoppg.Seen would
// (same key, same table, its "already expired: only looked up" branch)
// and writes the delegation and credential only when the claim succeeded:
// a replayed proof never yields a credential (G-3).
func TestRedeemRecorded(t *testing.T) {
	now := base
	clock := func() time.Time { return now }
	pools := pgtest.Replicas(t, 2, false)
	s, rc := recordingReplica(t, pools[0], clock)
	_, other := recordingReplica(t, pools[1], clock)
	exp := base.Add(time.Minute)

	for name, c := range map[string]dpop.ReplayCache{
		"dpoppg on another pool": other, "memory": dpop.NewMemoryReplayCache(), "nil": nil,
	} {
		if s.SharesReplayCache(c) {
			t.Errorf("%s: SharesReplayCache = true", name)
		}
		if err := s.RedeemRecorded(ctx, c, delegation("az-x"), bearer("az-x", "h-x", exp), nil, claim("h", "x", exp)); err == nil {
			t.Errorf("%s: RedeemRecorded accepted a cache it does not share", name)
		}
	}
	if wrote(t, s, "az-x", "h-x") {
		t.Fatal("a refused RedeemRecorded wrote")
	}
	if !s.SharesReplayCache(rc) {
		t.Fatal("SharesReplayCache(the dpoppg cache on the same pool) = false")
	}

	// First use: the pair in dpoppg's table, found by dpoppg's own key.
	if err := s.RedeemRecorded(ctx, rc, delegation("az-1"), bearer("az-1", "h-1", exp), nil, claim("h", "j1", exp)); err != nil {
		t.Fatal(err)
	}
	if !wrote(t, s, "az-1", "h-1") {
		t.Fatal("first redemption not written")
	}
	if held, err := rc.Contains(ctx, "h", "j1"); err != nil || !held {
		t.Fatalf("pair not recorded in dpoppg's table: %v %v", held, err)
	}
	// A replay, of a pair recorded by the fold or by dpoppg.Seen, writes
	// nothing, bearer or init token.
	if replayed, err := rc.Seen(ctx, "h", "j2", exp); err != nil || replayed {
		t.Fatal(replayed, err)
	}
	for _, jti := range []string{"j1", "j2"} {
		id := "az-replay-" + jti
		err := s.RedeemRecorded(ctx, rc, delegation(id), bearer(id, "h-"+id, exp), nil, claim("h", jti, exp))
		if !errors.Is(err, errReplayed) {
			t.Errorf("replay of %s: %v, want the replay", jti, err)
		}
		if wrote(t, s, id, "h-"+id) {
			t.Errorf("replay of %s wrote a delegation", jti)
		}
		if err := s.RedeemRecorded(ctx, rc, delegation(id), nil, initToken(id, "i-"+id, exp), claim("h", jti, exp)); !errors.Is(err, errReplayed) {
			t.Errorf("replay of %s with an init token: %v", jti, err)
		}
		if _, err := s.Delegation(ctx, id); !errors.Is(err, service.ErrNotFound) {
			t.Errorf("replay of %s with an init token wrote a delegation: %v", jti, err)
		}
	}

	// A pair already past its exp is only looked up: the redemption is
	// written, the pair not stored; one held by an unexpired row is a
	// replay.
	if err := s.RedeemRecorded(ctx, rc, delegation("az-past"), bearer("az-past", "h-past", exp), nil, claim("h", "past", base)); err != nil {
		t.Fatal(err)
	}
	if held, _ := rc.Contains(ctx, "h", "past"); held || !wrote(t, s, "az-past", "h-past") {
		t.Errorf("expired pair: stored %v, want only the redemption written", held)
	}
	if err := s.RedeemRecorded(ctx, rc, delegation("az-past2"), bearer("az-past2", "h-past2", exp), nil, claim("h", "j1", base)); !errors.Is(err, errReplayed) {
		t.Errorf("expired exp of a held pair: %v, want the replay", err)
	}
	// An expired row is reclaimed, as by Seen.
	now = exp.Add(time.Second)
	if err := s.RedeemRecorded(ctx, rc, delegation("az-again"), bearer("az-again", "h-again", now.Add(time.Hour)), nil, claim("h", "j1", now.Add(time.Minute))); err != nil {
		t.Errorf("pair after its expiry: %v", err)
	}
	now = base

	// A taken authorization id: ErrConflict, and the pair is not stored
	// either (one statement).
	err := s.RedeemRecorded(ctx, rc, delegation("az-1"), bearer("az-1", "h-other", exp), nil, claim("h", "conflict", exp))
	if !errors.Is(err, service.ErrConflict) {
		t.Errorf("taken id: %v, want ErrConflict", err)
	}
	if held, _ := rc.Contains(ctx, "h", "conflict"); held {
		t.Error("the pair of a conflicting redemption was stored")
	}

	// record failing, recording nothing, or recording twice: nothing is
	// written.
	boom := errors.New("boom")
	cases := map[string]struct {
		record func(dpop.ReplayCache) error
		want   error
	}{
		"fails":   {func(dpop.ReplayCache) error { return boom }, boom},
		"no Seen": {func(dpop.ReplayCache) error { return nil }, nil},
		"twice": {func(c dpop.ReplayCache) error {
			if err := claim("h", "t1", exp)(c); err != nil {
				return err
			}
			return claim("h", "t2", exp)(c)
		}, nil},
	}
	for name, tc := range cases {
		id := "az-" + name
		err := s.RedeemRecorded(ctx, rc, delegation(id), bearer(id, "h-"+id, exp), nil, tc.record)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want an error", name, err)
		}
		if name != "twice" && wrote(t, s, id, "h-"+id) {
			t.Errorf("%s: written", name)
		}
	}
}

// TestRedeemRecordedReplicas: two Service replicas on two pools, each with
// the dpoppg cache on its own pool, redeem concurrently with one harness
// proof (two passes of one holder key, a proof without aph): exactly one
// delegation and credential are written (G-3, #19 item 6).
func TestRedeemRecordedReplicas(t *testing.T) {
	pools := pgtest.Replicas(t, 2, false)
	type replica struct {
		s  *servicepg.Store
		rc *dpoppg.ReplayCache
	}
	var rs []replica
	for _, p := range pools {
		s, rc := recordingReplica(t, p, time.Now)
		rs = append(rs, replica{s, rc})
	}
	exp := time.Now().Add(time.Minute)
	const n = 20
	var ok, replays atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, id := rs[i%2], fmt.Sprintf("az-%d", i)
			err := r.s.RedeemRecorded(ctx, r.rc, delegation(id), bearer(id, "h-"+id, base.Add(time.Hour)), nil, claim("h", "same-jti", exp))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, errReplayed):
				replays.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || replays.Load() != n-1 {
		t.Fatalf("%d redemptions written and %d replays of one proof, want 1 and %d", ok.Load(), replays.Load(), n-1)
	}
	written := 0
	for i := range n {
		id := fmt.Sprintf("az-%d", i)
		if wrote(t, rs[0].s, id, "h-"+id) {
			written++
		}
	}
	if written != 1 {
		t.Errorf("%d delegations stored, want 1", written)
	}
}
