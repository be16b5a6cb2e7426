package authority_test

import (
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/pass"
)

// pgReplicas returns an env whose Authority runs on PostgreSQL, and a
// second replica of it on its own pool of the same schema.
func pgReplicas(t *testing.T) (*env, *authority.Authority, *authoritypg.Store) {
	t.Helper()
	pools := pgtest.Replicas(t, 2, false)
	stores := make([]*authoritypg.Store, 2)
	for i, p := range pools {
		stores[i] = authoritypg.New(p)
		if err := stores[i].Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var cfg authority.Config
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = stores[0] }, func(c *authority.Config) { cfg = *c })
	cfg.Store = stores[1]
	b, err := authority.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, b, stores[1]
}

// E11: an Authority that committed a revocation and died before sending
// it loses nothing: a restarted one (another replica on the same database)
// delivers it, once. One that died holding a claim delays the SET only
// until its lease lapses.
func TestEventsSurviveRestart(t *testing.T) {
	e, b, store := pgReplicas(t)
	rc := withEvents(e, e.svc, pass.DeliveryPush, e.svc.Origin+"/events")
	authz, mission := e.redeemedMission()
	if _, err := e.auth.Revoke(ctx, mission, "human:op", ""); err != nil {
		t.Fatal(err)
	}
	// e.auth never transmits: it "died" after the commit.
	if _, err := b.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if set := e.verifySET(receive(t, rc)); set.Subject != authz || set.Event.Type != secevent.SessionRevoked {
		t.Errorf("delivered %+v", set)
	}
	if _, err := b.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-rc.got:
		t.Fatalf("delivered twice: %s", s)
	default:
	}

	// Died holding the claim of the next SET.
	_, mission = e.redeemedMission()
	if _, err := e.auth.Suspend(ctx, mission, "human:op", ""); err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	if evs, err := store.ClaimEvents(ctx, "dead-replica", now, now.Add(30*time.Second), 10, 4); err != nil || len(evs) != 1 {
		t.Fatalf("claim by the replica about to die: %d, %v", len(evs), err)
	}
	if _, err := b.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rc.got:
		t.Fatal("a leased SET was sent by another replica")
	default:
	}
	e.clock.Advance(31 * time.Second)
	if _, err := b.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if set := e.verifySET(receive(t, rc)); set.Event.Type != secevent.MissionSuspended {
		t.Errorf("after the lease lapsed: %s", set.Event.Type)
	}
}

// Two replicas transmitting from one outbox while both commit changes:
// every SET arrives once, each subject's SETs arrive in version order
// (a resumption may be superseded by a later suspension before it is
// claimed), and each subject's last SET arrives.
func TestEventsReplicasOrder(t *testing.T) {
	e, b, _ := pgReplicas(t)
	rc := withEvents(e, e.svc, pass.DeliveryPush, e.svc.Origin+"/events")
	rc.got = make(chan string, 256)
	const missions, cycles = 4, 5
	var ids []string
	for range missions {
		_, m := e.redeemedMission()
		ids = append(ids, m)
	}
	runTransmitter(t, e.auth)
	runTransmitter(t, b)
	var wg sync.WaitGroup
	final := make([]int64, len(ids))
	for i, m := range ids {
		wg.Go(func() {
			replicas := []*authority.Authority{e.auth, b}
			for c := range cycles {
				a := replicas[(i+c)%2]
				if _, err := a.Suspend(ctx, m, "human:op", ""); err != nil {
					t.Error(err)
					return
				}
				rec, err := replicas[(i+c+1)%2].Resume(ctx, m, "human:op")
				if err != nil {
					t.Error(err)
					return
				}
				final[i] = rec.Version
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	last := map[string]int64{}
	got := map[string]int64{} // by mission
	done := func() bool {
		for i, m := range ids {
			if got[m] != final[i] {
				return false
			}
		}
		return true
	}
	for n := 0; !done(); n++ {
		if n > missions*cycles*2 {
			t.Fatalf("more SETs than changes; last versions %v, want %v", got, final)
		}
		set := e.verifySET(receive(t, rc))
		if seen[set.JTI] {
			t.Fatalf("SET %s delivered twice", set.JTI)
		}
		seen[set.JTI] = true
		v := set.Event.Mission.Version
		if v <= last[set.Subject] {
			t.Errorf("subject %s: version %d after %d", set.Subject, v, last[set.Subject])
		}
		last[set.Subject] = v
		got[set.Event.Mission.ID] = v
	}
	if len(last) != missions {
		t.Errorf("%d subjects, want %d", len(last), missions)
	}
}
