package servicetest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// child returns a delegation of a sub-agent of parent, at the same
// Authority unless authority is not empty.
func child(parent *service.DelegationRecord, authority string) *service.DelegationRecord {
	d := delegation(uniq("authz"))
	if authority != "" {
		d.Authority = authority
	} else {
		d.Authority = parent.Authority
	}
	d.Agent = parent.Agent + "/sub"
	d.Chain = append([]pass.Actor{{Sub: d.Agent, MissionID: d.MissionID}}, parent.Chain...)
	if len(parent.Chain) == 0 {
		d.Chain = append(d.Chain, pass.Actor{Sub: parent.Agent, MissionID: parent.MissionID})
	}
	d.Ancestors = append([]string{parent.MissionID}, parent.Ancestors...)
	return d
}

// redeemAll stores each delegation with a bearer credential and returns
// the credentials' hashes.
func redeemAll(t *testing.T, s service.Store, ds ...*service.DelegationRecord) []string {
	t.Helper()
	var hashes []string
	for _, d := range ds {
		c := credential(d.AuthorizationID, service.KindBearer)
		if err := s.Redeem(ctx, d, c, nil); err != nil {
			t.Fatalf("Redeem %s: %v", d.AuthorizationID, err)
		}
		hashes = append(hashes, c.Hash)
	}
	return hashes
}

// invalidated reports the stored state of id.
func invalidated(t *testing.T, s service.Store, id string) (bool, string) {
	t.Helper()
	d, err := s.Delegation(ctx, id)
	if err != nil {
		t.Fatalf("Delegation %s: %v", id, err)
	}
	return d.Invalidated, d.InvalidReason
}

// testInvalidateTree (D7, D11 local part, §9 fix 4): ending a delegation
// ends the delegations of its sub-agents at every depth, from the same
// Authority only, in one call; the chain and ancestors round-trip.
func testInvalidateTree(t *testing.T, s service.Store) {
	root := delegation(uniq("authz"))
	c1 := child(root, "")
	g1 := child(c1, "")
	c2 := child(root, "") // ended before: keeps its reason
	// Another Authority naming the same mission id as an ancestor: never
	// touched, whatever it claims.
	foreign := child(root, "https://other-idp.example.com")
	unrelated := child(delegation(uniq("authz")), "")
	hashes := redeemAll(t, s, root, c1, g1, c2, foreign, unrelated)

	got, err := s.Delegation(ctx, g1.AuthorizationID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g1, got, timeEqual); diff != "" {
		t.Errorf("grandchild delegation (-want +got):\n%s", diff)
	}
	if len(got.Chain) != 3 || got.Chain[2].MissionID != root.MissionID || len(got.Ancestors) != 2 {
		t.Fatalf("grandchild chain %+v ancestors %v", got.Chain, got.Ancestors)
	}

	if err := s.Invalidate(ctx, c2.AuthorizationID, base, "closed"); err != nil {
		t.Fatal(err)
	}
	at := base.Add(time.Minute)
	n, err := s.InvalidateTree(ctx, root.AuthorizationID, at, "revoked")
	if err != nil || n != 3 {
		t.Fatalf("InvalidateTree(root) = %d, %v; want 3 (root, child, grandchild)", n, err)
	}
	for _, tc := range []struct {
		d      *service.DelegationRecord
		hash   string
		want   bool
		reason string
	}{
		{root, hashes[0], true, "revoked"},
		{c1, hashes[1], true, "cascade: revoked"},
		{g1, hashes[2], true, "cascade: revoked"},
		{c2, hashes[3], true, "closed"},
		{foreign, hashes[4], false, ""},
		{unrelated, hashes[5], false, ""},
	} {
		_, d, err := s.Credential(ctx, tc.hash, at)
		if err != nil {
			t.Fatalf("Credential of %s: %v", tc.d.Agent, err)
		}
		if d.Invalidated != tc.want || d.InvalidReason != tc.reason {
			t.Errorf("%s after the parent ended: invalidated=%v reason %q; want %v %q",
				d.AuthorizationID, d.Invalidated, d.InvalidReason, tc.want, tc.reason)
		}
		if tc.want && tc.d != c2 && !d.InvalidatedAt.Equal(at) {
			t.Errorf("%s invalidated at %v, want %v", d.AuthorizationID, d.InvalidatedAt, at)
		}
	}
	if n, err := s.InvalidateTree(ctx, root.AuthorizationID, at.Add(time.Minute), "again"); err != nil || n != 0 {
		t.Errorf("second InvalidateTree = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.InvalidateTree(ctx, uniq("nope"), at, "x"); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("InvalidateTree(unknown) = %v, want ErrNotFound", err)
	}

	// Ending a middle generation ends its descendants, not its ancestors.
	r2 := delegation(uniq("authz"))
	m2 := child(r2, "")
	l2 := child(m2, "")
	redeemAll(t, s, r2, m2, l2)
	if n, err := s.InvalidateTree(ctx, m2.AuthorizationID, at, "closed by the Service: revoke"); err != nil || n != 2 {
		t.Fatalf("InvalidateTree(middle) = %d, %v; want 2", n, err)
	}
	if inv, _ := invalidated(t, s, r2.AuthorizationID); inv {
		t.Error("ending a child ended its parent")
	}
	if inv, reason := invalidated(t, s, l2.AuthorizationID); !inv || reason != "cascade: closed by the Service: revoke" {
		t.Errorf("grandchild: invalidated=%v %q", inv, reason)
	}

	// A delegation without a mission: InvalidateTree is Invalidate.
	plain := delegation(uniq("authz"))
	plain.MissionID, plain.MissionVersion, plain.MissionState = "", 0, ""
	redeemAll(t, s, plain)
	if n, err := s.InvalidateTree(ctx, plain.AuthorizationID, at, "revoked"); err != nil || n != 1 {
		t.Errorf("InvalidateTree(no mission) = %d, %v; want 1", n, err)
	}
}

// testInvalidateTreeRace: concurrent InvalidateTree calls on every node of
// a tree invalidate each delegation exactly once (the counts add up to the
// tree), and no descendant is left alive.
func testInvalidateTreeRace(t *testing.T, s service.Store) {
	root := delegation(uniq("authz"))
	tree := []*service.DelegationRecord{root}
	for range 6 {
		c := child(root, "")
		tree = append(tree, c)
		for range 3 {
			tree = append(tree, child(c, ""))
		}
	}
	redeemAll(t, s, tree...)
	var total atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, d := range tree {
		wg.Go(func() {
			<-start
			n, err := s.InvalidateTree(ctx, d.AuthorizationID, base.Add(time.Duration(i)*time.Second), "revoked")
			if err != nil {
				t.Errorf("InvalidateTree: %v", err)
			}
			total.Add(int64(n))
		})
	}
	close(start)
	wg.Wait()
	if got := total.Load(); got != int64(len(tree)) {
		t.Errorf("concurrent InvalidateTree invalidated %d delegations in all, want %d (each exactly once)", got, len(tree))
	}
	for _, d := range tree {
		if inv, _ := invalidated(t, s, d.AuthorizationID); !inv {
			t.Errorf("%s alive after the race", d.AuthorizationID)
		}
	}
}

// testCascadeSameIdentifierOtherConfiguration (review finding 2, §9 fix
// 4): an enterprise Authority's identifier is whatever its configuration
// says, so a hostile domain can publish a configuration claiming an honest
// Authority's identifier. Its delegations, naming the honest mission as
// their own or as an ancestor, must never let it end the honest
// Authority's delegations: a cascade stays within one Authority as the
// Service found it (identifier and configuration URL).
func testCascadeSameIdentifierOtherConfiguration(t *testing.T, s service.Store) {
	honest := delegation(uniq("authz"))
	honestChild := child(honest, "")
	posing := delegation(uniq("authz"))
	posing.ConfigurationURL = "https://evil.example.net/ap"
	posing.MissionID = honest.MissionID
	posingChild := delegation(uniq("authz"))
	posingChild.ConfigurationURL = posing.ConfigurationURL
	posingChild.Ancestors = []string{honest.MissionID}
	posingSibling := delegation(uniq("authz"))
	posingSibling.ConfigurationURL, posingSibling.MissionID = posing.ConfigurationURL, honest.MissionID
	redeemAll(t, s, honest, honestChild, posing, posingChild, posingSibling)

	if _, err := s.InvalidateTree(ctx, posing.AuthorizationID, base, "revoked"); err != nil {
		t.Fatal(err)
	}
	applied, err := s.ApplyEvent(ctx, service.MissionEvent{Authority: posingSibling.Authority, AuthorizationID: posingSibling.AuthorizationID,
		MissionID: posingSibling.MissionID, Version: 9, Action: service.EventEnd, At: base, Reason: "mission revoked"})
	if err != nil || !applied {
		t.Fatalf("ApplyEvent(end) = %v, %v", applied, err)
	}
	for _, d := range []*service.DelegationRecord{honest, honestChild} {
		if inv, reason := invalidated(t, s, d.AuthorizationID); inv {
			t.Errorf("%s of the honest configuration ended by another one's cascade: %q", d.AuthorizationID, reason)
		}
	}
	for _, d := range []*service.DelegationRecord{posing, posingChild, posingSibling} {
		if inv, _ := invalidated(t, s, d.AuthorizationID); !inv {
			t.Errorf("%s of the posing configuration was not ended", d.AuthorizationID)
		}
	}
}
