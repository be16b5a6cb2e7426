package servicepg_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// D7/D11 (local cascade) on two replicas: a tree of sub-agent delegations
// redeemed through both, ended from both at once. Each delegation is
// invalidated exactly once (the counts add up), every credential is
// refused on either replica afterwards, and a delegation of another
// Authority naming the same ancestor mission id survives (§9 fix 4).
func TestReplicasCascade(t *testing.T) {
	s1, s2 := twoReplicas(t)
	var stores []*service.DelegationRecord
	id := func(p string) string { return fmt.Sprintf("%s-%d", p, time.Now().UnixNano()) }
	root := delegation(id("root"))
	root.MissionID, root.MissionVersion, root.MissionState = "msn_"+root.AuthorizationID, 1, pass.MissionActive
	stores = append(stores, root)
	var children []*service.DelegationRecord
	for i := range 8 {
		c := delegation(fmt.Sprintf("%s-c%d", root.AuthorizationID, i))
		c.MissionID, c.MissionVersion, c.MissionState = "msn_"+c.AuthorizationID, 1, pass.MissionActive
		c.Chain = []pass.Actor{{Sub: "agent-1/c", MissionID: c.MissionID}, {Sub: "agent-1", MissionID: root.MissionID}}
		c.Ancestors = []string{root.MissionID}
		children = append(children, c)
		g := delegation(c.AuthorizationID + "-g")
		g.MissionID, g.MissionVersion, g.MissionState = "msn_"+g.AuthorizationID, 1, pass.MissionActive
		g.Ancestors = []string{c.MissionID, root.MissionID}
		stores = append(stores, c, g)
	}
	foreign := delegation(root.AuthorizationID + "-foreign")
	foreign.Authority = "https://other-idp.example.com"
	foreign.MissionID, foreign.Ancestors = "msn_"+foreign.AuthorizationID, []string{root.MissionID}
	hashes := map[string]string{}
	for i, d := range append(stores, foreign) {
		s := s1
		if i%2 == 1 {
			s = s2
		}
		h := "hash-" + d.AuthorizationID
		if err := s.Redeem(ctx, d, bearer(d.AuthorizationID, h, base.Add(time.Hour)), nil); err != nil {
			t.Fatal(err)
		}
		hashes[d.AuthorizationID] = h
	}

	var total atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, d := range append([]*service.DelegationRecord{root}, children...) {
		s := s1
		if i%2 == 1 {
			s = s2
		}
		wg.Go(func() {
			<-start
			n, err := s.InvalidateTree(ctx, d.AuthorizationID, base.Add(time.Minute), "revoked")
			if err != nil {
				t.Errorf("InvalidateTree: %v", err)
			}
			total.Add(int64(n))
		})
	}
	close(start)
	wg.Wait()
	if got := total.Load(); got != int64(len(stores)) {
		t.Errorf("the replicas invalidated %d delegations in all, want %d (each once)", got, len(stores))
	}
	for _, d := range stores {
		for _, st := range []service.Store{s1, s2} {
			_, got, err := st.Credential(ctx, hashes[d.AuthorizationID], base.Add(2*time.Minute))
			if err != nil || !got.Invalidated {
				t.Fatalf("%s after the cascade: %+v, %v; want invalidated on both replicas", d.AuthorizationID, got, err)
			}
		}
	}
	if _, got, err := s2.Credential(ctx, hashes[foreign.AuthorizationID], base.Add(2*time.Minute)); err != nil || got.Invalidated {
		t.Errorf("another Authority's delegation was ended by the cascade: %+v, %v", got, err)
	}
}
