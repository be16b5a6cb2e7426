// Package servicetest tests Service applications and Service stores.
//
// # Overview
//
// [NewServer], in the spirit of net/http/httptest, starts a real Service
// around an application's handler, with a real Authority and a DNS
// server, over TLS on loopback, and returns clients already configured
// for them: a Harness that acquires passes as an agent would, an HTTP
// client and a discovery client. Every party runs on one fake clock.
//
// Every Store, in memory or in a database, must pass [TestStore]: the
// Service relies on the Store for single use and for revocation, so a
// Store that loses a race lets a token or a one-time URL work twice. The
// suite checks each operation's contract, concurrent consumption and
// redemption, and two Service replicas sharing the Store over real HTTPS.
//
// # Usage
//
//	func TestTickets(t *testing.T) {
//		srv := servicetest.NewServer(t, myApp, nil)
//		agent, err := srv.Agent(t.Context(), "tickets:read")
//		// ... agent.Get(srv.URL + "/api/tickets")
//	}
//
//	func TestPostgresStore(t *testing.T) {
//		servicetest.TestStore(t, func(t *testing.T) service.Store { return newTestStore(t) })
//	}
package servicetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// base is the fixed clock of the suite.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// counter makes the ids of one run distinct, so a store shared between
// subtests (a database) never sees a collision it did not ask for.
var (
	counterMu sync.Mutex
	counter   int
)

func uniq(prefix string) string {
	counterMu.Lock()
	defer counterMu.Unlock()
	counter++
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), counter)
}

func delegation(id string) *service.DelegationRecord {
	return &service.DelegationRecord{
		AuthorizationID:  id,
		Authority:        "https://idp.example.com",
		ConfigurationURL: "https://idp.example.com/ap",
		TrustMode:        pass.TrustEnterprise,
		User:             "alex@example.com",
		Agent:            "agent-1",
		HarnessID:        "harness-1",
		Task:             pass.Task{ID: "t1", Description: "triage", Attested: true},
		Scope:            pass.Scope{"tickets:read", "tickets:write"},
		CurrentScope:     pass.Scope{"tickets:read", "tickets:write"},
		ExpiresAt:        base.Add(2 * time.Hour),
		CreatedAt:        base,
		CheckedAt:        base,
		MissionID:        "msn_" + id,
		MissionVersion:   3,
		MissionState:     pass.MissionActive,
	}
}

func credential(id string, kind service.CredentialKind) *service.CredentialRecord {
	return &service.CredentialRecord{
		Hash:            uniq("hash"),
		Kind:            kind,
		AuthorizationID: id,
		Scope:           pass.Scope{"tickets:read"},
		CreatedAt:       base,
		ExpiresAt:       base.Add(time.Hour),
	}
}

func initToken(id string) *service.InitRecord {
	return &service.InitRecord{
		Hash:            uniq("init"),
		AuthorizationID: id,
		Scope:           pass.Scope{"tickets:read"},
		Destination:     "https://app.example.com/home",
		CreatedAt:       base,
		ExpiresAt:       base.Add(time.Minute),
	}
}

// TestStore runs the conformance suite against stores made by newStore,
// one named subtest each. newStore may return the same store for every
// call (a shared database): the suite uses fresh ids everywhere.
func TestStore(t *testing.T, newStore func(t *testing.T) service.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s service.Store)
	}{
		{"RedeemTokenThenCredential", testRedeemTokenThenCredential},
		{"UnknownRecords", testUnknownRecords},
		{"RedeemConflictStoresNothing", testRedeemConflictStoresNothing},
		{"CredentialExpiry", testCredentialExpiry},
		{"InitSingleUse", testInitSingleUse},
		{"InitExpiry", testInitExpiry},
		{"InitConcurrentConsume", testInitConcurrentConsume},
		{"AddCredentialAndInvalidate", testAddCredentialAndInvalidate},
		{"RecordCheck", testRecordCheck},
		{"ConcurrentRedeemOneAuthorization", testConcurrentRedeemOneAuthorization},
		{"RedeemRetrySameRecords", testRedeemRetry},
		{"TwoServicesInitializeRaceHTTPS", testTwoServices},
		{"PendingCloses", testPendingCloses},
		{"MissionCheck", testMissionCheck},
		{"MissionCheckRace", testMissionCheckRace},
		{"InvalidateTree", testInvalidateTree},
		{"InvalidateTreeRace", testInvalidateTreeRace},
		{"CascadeSameIdentifierOtherConfiguration", testCascadeSameIdentifierOtherConfiguration},
		{"ApplyEvent", testApplyEvent},
		{"ApplyEventKeys", testApplyEventKeys},
		{"ApplyStageEvent", testApplyStageEvent},
		{"ApplyEventCascade", testApplyEventCascade},
		{"ApplyEventRace", testApplyEventRace},
		{"StagedDelegation", testStagedDelegation},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

var ctx = context.Background()

func testRedeemTokenThenCredential(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	c := credential(d.AuthorizationID, service.KindDPoP)
	c.JKT = "thumbprint"
	if err := s.Redeem(ctx, d, c, nil); err != nil {
		t.Fatalf("Redeem: %v", err)
	}
	gotC, gotD, err := s.Credential(ctx, c.Hash, base)
	if err != nil {
		t.Fatalf("Credential: %v", err)
	}
	if diff := cmp.Diff(c, gotC, timeEqual); diff != "" {
		t.Errorf("credential (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(d, gotD, timeEqual); diff != "" {
		t.Errorf("delegation (-want +got):\n%s", diff)
	}
	// Returned records are copies.
	gotD.Scope[0] = "mutated"
	gotC.Scope[0] = "mutated"
	_, again, err := s.Credential(ctx, c.Hash, base)
	if err != nil || again.Scope[0] != "tickets:read" {
		t.Errorf("store shares memory with its callers: %v %v", again, err)
	}
	byID, err := s.Delegation(ctx, d.AuthorizationID)
	if err != nil {
		t.Fatalf("Delegation: %v", err)
	}
	if diff := cmp.Diff(d, byID, timeEqual); diff != "" {
		t.Errorf("Delegation (-want +got):\n%s", diff)
	}
}

func testUnknownRecords(t *testing.T, s service.Store) {
	if _, _, err := s.Credential(ctx, uniq("nope"), base); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("Credential(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Delegation(ctx, uniq("nope")); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("Delegation(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.ConsumeInit(ctx, uniq("nope"), base); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("ConsumeInit(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.Invalidate(ctx, uniq("nope"), base, "x"); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("Invalidate(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.RecordCheck(ctx, uniq("nope"), base, pass.Scope{"a"}, time.Time{}); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("RecordCheck(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.AddCredential(ctx, credential(uniq("nope"), service.KindSession)); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("AddCredential(unknown delegation) = %v, want ErrNotFound", err)
	}
}

func testRedeemConflictStoresNothing(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); err != nil {
		t.Fatal(err)
	}
	c2 := credential(d.AuthorizationID, service.KindBearer)
	if err := s.Redeem(ctx, d, c2, nil); !errors.Is(err, service.ErrConflict) {
		t.Fatalf("second Redeem of one authorization id = %v, want ErrConflict", err)
	}
	if _, _, err := s.Credential(ctx, c2.Hash, base); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("credential of a refused Redeem exists: %v", err)
	}
	in := initToken(d.AuthorizationID)
	if err := s.Redeem(ctx, d, nil, in); !errors.Is(err, service.ErrConflict) {
		t.Fatalf("Redeem with init of a taken id = %v, want ErrConflict", err)
	}
	if _, err := s.ConsumeInit(ctx, in.Hash, base); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("init token of a refused Redeem exists: %v", err)
	}
}

func testCredentialExpiry(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	c := credential(d.AuthorizationID, service.KindBearer)
	if err := s.Redeem(ctx, d, c, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Credential(ctx, c.Hash, c.ExpiresAt.Add(-time.Second)); err != nil {
		t.Errorf("credential before expiry: %v", err)
	}
	if _, _, err := s.Credential(ctx, c.Hash, c.ExpiresAt); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("credential at expiry = %v, want ErrNotFound", err)
	}
}

// testInitSingleUse: an initialization token works once; a second
// consumption gets ErrInitUsed.
func testInitSingleUse(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	in := initToken(d.AuthorizationID)
	if err := s.Redeem(ctx, d, nil, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.ConsumeInit(ctx, in.Hash, base.Add(time.Second))
	if err != nil {
		t.Fatalf("first ConsumeInit: %v", err)
	}
	want := *in
	want.Used = true
	if diff := cmp.Diff(&want, got, timeEqual, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Used" }, cmp.Ignore())); diff != "" {
		t.Errorf("ConsumeInit (-want +got):\n%s", diff)
	}
	if _, err := s.ConsumeInit(ctx, in.Hash, base.Add(2*time.Second)); !errors.Is(err, service.ErrInitUsed) {
		t.Errorf("second ConsumeInit = %v, want ErrInitUsed", err)
	}
}

// testInitExpiry: a token is refused from its expiry on, and once refused
// as expired it is used up (a clock stepped back cannot revive it).
func testInitExpiry(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	in := initToken(d.AuthorizationID)
	if err := s.Redeem(ctx, d, nil, in); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeInit(ctx, in.Hash, in.ExpiresAt); !errors.Is(err, service.ErrInitExpired) {
		t.Errorf("ConsumeInit at expiry = %v, want ErrInitExpired", err)
	}
	if _, err := s.ConsumeInit(ctx, in.Hash, in.ExpiresAt.Add(-time.Second)); err == nil {
		t.Errorf("an expired, refused init token was accepted later")
	}
}

// testInitConcurrentConsume: of concurrent consumptions of one token,
// exactly one succeeds.
func testInitConcurrentConsume(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	in := initToken(d.AuthorizationID)
	if err := s.Redeem(ctx, d, nil, in); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.ConsumeInit(ctx, in.Hash, base.Add(time.Second))
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	ok, used := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, service.ErrInitUsed):
			used++
		default:
			t.Errorf("concurrent ConsumeInit: unexpected error %v", err)
		}
	}
	if ok != 1 || used != n-1 {
		t.Errorf("%d concurrent consumes: %d succeeded, %d used; want 1 and %d", n, ok, used, n-1)
	}
}

// testAddCredentialAndInvalidate: invalidating a delegation reaches every
// credential of it and no other delegation, keeps the first reason, and
// lets no credential or redemption revive it.
func testAddCredentialAndInvalidate(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	other := delegation(uniq("authz"))
	tok := credential(d.AuthorizationID, service.KindBearer)
	if err := s.Redeem(ctx, d, tok, nil); err != nil {
		t.Fatal(err)
	}
	otherTok := credential(other.AuthorizationID, service.KindBearer)
	if err := s.Redeem(ctx, other, otherTok, nil); err != nil {
		t.Fatal(err)
	}
	sess := credential(d.AuthorizationID, service.KindSession)
	if err := s.AddCredential(ctx, sess); err != nil {
		t.Fatalf("AddCredential: %v", err)
	}
	if err := s.AddCredential(ctx, sess); !errors.Is(err, service.ErrConflict) {
		t.Errorf("AddCredential with a taken hash = %v, want ErrConflict", err)
	}
	if err := s.Invalidate(ctx, d.AuthorizationID, base.Add(time.Minute), "revoked"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	if err := s.Invalidate(ctx, d.AuthorizationID, base.Add(2*time.Minute), "again"); err != nil {
		t.Fatalf("second Invalidate: %v", err)
	}
	for _, h := range []string{tok.Hash, sess.Hash} {
		_, gd, err := s.Credential(ctx, h, base.Add(3*time.Minute))
		if err != nil {
			t.Fatalf("Credential after invalidation: %v (want the invalidated delegation)", err)
		}
		if !gd.Invalidated || gd.InvalidReason != "revoked" || !gd.InvalidatedAt.Equal(base.Add(time.Minute)) {
			t.Errorf("delegation after Invalidate = {Invalidated:%v Reason:%q At:%v}, want first invalidation kept",
				gd.Invalidated, gd.InvalidReason, gd.InvalidatedAt)
		}
	}
	if _, od, err := s.Credential(ctx, otherTok.Hash, base.Add(3*time.Minute)); err != nil || od.Invalidated {
		t.Errorf("another delegation was affected: %v, %v", od, err)
	}
	if err := s.AddCredential(ctx, credential(d.AuthorizationID, service.KindSession)); !errors.Is(err, service.ErrConflict) {
		t.Errorf("AddCredential to an invalidated delegation = %v, want ErrConflict", err)
	}
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); !errors.Is(err, service.ErrConflict) {
		t.Errorf("Redeem resurrected an invalidated delegation: %v", err)
	}
}

// testRecordCheck: a check records its time, narrows CurrentScope (never
// the redemption-time Scope), only moves the expiry earlier, and changes
// nothing once the delegation is invalidated.
func testRecordCheck(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); err != nil {
		t.Fatal(err)
	}
	at := base.Add(40 * time.Second)
	if err := s.RecordCheck(ctx, d.AuthorizationID, at, pass.Scope{"tickets:read"}, base.Add(time.Hour)); err != nil {
		t.Fatalf("RecordCheck: %v", err)
	}
	got, err := s.Delegation(ctx, d.AuthorizationID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CheckedAt.Equal(at) || !cmp.Equal(got.CurrentScope, pass.Scope{"tickets:read"}) || !got.ExpiresAt.Equal(base.Add(time.Hour)) {
		t.Errorf("after RecordCheck: CheckedAt=%v CurrentScope=%v ExpiresAt=%v", got.CheckedAt, got.CurrentScope, got.ExpiresAt)
	}
	if !cmp.Equal(got.Scope, d.Scope) {
		t.Errorf("RecordCheck changed the redemption-time Scope to %v", got.Scope)
	}
	// An expiry only moves earlier; a zero expiry changes nothing.
	if err := s.RecordCheck(ctx, d.AuthorizationID, at.Add(time.Second), pass.Scope{"tickets:read"}, base.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordCheck(ctx, d.AuthorizationID, at.Add(2*time.Second), pass.Scope{"tickets:read"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Delegation(ctx, d.AuthorizationID)
	if !got.ExpiresAt.Equal(base.Add(time.Hour)) {
		t.Errorf("ExpiresAt moved later: %v", got.ExpiresAt)
	}
	// No effect once invalidated.
	if err := s.Invalidate(ctx, d.AuthorizationID, at, "revoked"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordCheck(ctx, d.AuthorizationID, at.Add(time.Minute), pass.Scope{"tickets:write"}, time.Time{}); err != nil {
		t.Fatalf("RecordCheck on an invalidated delegation: %v", err)
	}
	got, _ = s.Delegation(ctx, d.AuthorizationID)
	if !got.Invalidated || !cmp.Equal(got.CurrentScope, pass.Scope{"tickets:read"}) {
		t.Errorf("RecordCheck revived or changed an invalidated delegation: %+v", got)
	}
}

func testConcurrentRedeemOneAuthorization(t *testing.T, s service.Store) {
	id := uniq("authz")
	const n = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := s.Redeem(ctx, delegation(id), credential(id, service.KindBearer), nil)
			if err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !errors.Is(err, service.ErrConflict) {
				t.Errorf("Redeem: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok != 1 {
		t.Errorf("%d concurrent Redeem of one authorization id: %d succeeded, want 1", n, ok)
	}
}

// timeEqual compares times by instant, so stores may return them in
// another location or with monotonic readings stripped.
var timeEqual = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

// testPendingCloses: refused redemptions are revoked later, so a Store keeps
// the closes still to retry.
func testPendingCloses(t *testing.T, s service.Store) {
	a, b := uniq("authz"), uniq("authz")
	mine := func(got []*service.PendingClose) []*service.PendingClose {
		var out []*service.PendingClose
		for _, p := range got {
			if p.AuthorizationID == a || p.AuthorizationID == b {
				out = append(out, p)
			}
		}
		return out
	}
	pa := &service.PendingClose{AuthorizationID: a, Authority: "https://idp.example", ConfigurationURL: "https://idp.example/.well-known/agentpass",
		TrustMode: pass.TrustEnterprise, Reason: "redemption refused: scope_empty", Attempts: 1,
		NextAttempt: base.Add(time.Minute), ExpiresAt: base.Add(time.Hour)}
	pb := *pa
	pb.AuthorizationID, pb.NextAttempt = b, base.Add(2*time.Minute)
	for _, p := range []*service.PendingClose{pa, &pb} {
		if err := s.SavePendingClose(ctx, p); err != nil {
			t.Fatalf("SavePendingClose: %v", err)
		}
	}
	got, err := s.DuePendingCloses(ctx, base, 10)
	if err != nil || len(mine(got)) != 0 {
		t.Fatalf("nothing is due before NextAttempt: %v %v", got, err)
	}
	got, err = s.DuePendingCloses(ctx, base.Add(90*time.Second), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*service.PendingClose{pa}, mine(got), timeEqual); diff != "" {
		t.Errorf("due at +90s (-want +got):\n%s", diff)
	}
	// Saving again replaces the record (the next attempt moves on).
	pa.Attempts, pa.NextAttempt = 2, base.Add(3*time.Minute)
	if err := s.SavePendingClose(ctx, pa); err != nil {
		t.Fatal(err)
	}
	got, err = s.DuePendingCloses(ctx, base.Add(5*time.Minute), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*service.PendingClose{&pb, pa}, mine(got), timeEqual); diff != "" {
		t.Errorf("due at +5m, earliest first (-want +got):\n%s", diff)
	}
	// Returned records are copies.
	mine(got)[0].Reason = "mutated"
	for _, id := range []string{a, a, b} { // idempotent
		if err := s.DeletePendingClose(ctx, id); err != nil {
			t.Fatalf("DeletePendingClose: %v", err)
		}
	}
	got, err = s.DuePendingCloses(ctx, base.Add(time.Hour), 1000)
	if err != nil || len(mine(got)) != 0 {
		t.Errorf("after delete: %v %v", mine(got), err)
	}
}

// testMissionCheck: answers about a delegation's mission are ordered by
// version; an older one never releases a hold nor widens the scope, even
// when two replicas apply answers out of order.
func testMissionCheck(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); err != nil {
		t.Fatal(err)
	}
	type want struct {
		applied bool
		state   pass.MissionState
		version int64
		scope   pass.Scope
	}
	for _, step := range []struct {
		name string
		c    service.MissionCheck
		want want
	}{
		{"hold at v4", service.MissionCheck{At: base.Add(time.Minute), State: pass.MissionSuspended, Version: 4},
			want{true, pass.MissionSuspended, 4, pass.Scope{"tickets:read", "tickets:write"}}},
		{"stale release at v3 only narrows", service.MissionCheck{At: base.Add(2 * time.Minute), Scope: pass.Scope{"tickets:write", "other"}, State: pass.MissionActive, Version: 3},
			want{false, pass.MissionSuspended, 4, pass.Scope{"tickets:write"}}},
		{"unordered answer (version 0) only narrows", service.MissionCheck{At: base.Add(3 * time.Minute), Scope: pass.Scope{"tickets:read", "tickets:write"}, State: pass.MissionActive},
			want{false, pass.MissionSuspended, 4, pass.Scope{"tickets:write"}}},
		{"release at v5 sets the scope", service.MissionCheck{At: base.Add(4 * time.Minute), Scope: pass.Scope{"tickets:read"}, State: pass.MissionActive, Version: 5, ExpiresAt: base.Add(time.Hour)},
			want{true, pass.MissionActive, 5, pass.Scope{"tickets:read"}}},
		{"equal version applies", service.MissionCheck{At: base.Add(5 * time.Minute), Scope: pass.Scope{"tickets:read", "tickets:write"}, State: pass.MissionActive, Version: 5},
			want{true, pass.MissionActive, 5, pass.Scope{"tickets:read", "tickets:write"}}},
		{"stale hold at v4 changes no state", service.MissionCheck{At: base.Add(6 * time.Minute), State: pass.MissionSuspended, Version: 4, ExpiresAt: base.Add(3 * time.Hour)},
			want{false, pass.MissionActive, 5, pass.Scope{"tickets:read", "tickets:write"}}},
	} {
		applied, err := s.RecordMissionCheck(ctx, d.AuthorizationID, step.c)
		if err != nil {
			t.Fatalf("%s: RecordMissionCheck: %v", step.name, err)
		}
		got, err := s.Delegation(ctx, d.AuthorizationID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(step.want, want{applied, got.MissionState, got.MissionVersion, got.CurrentScope}, cmp.AllowUnexported(want{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", step.name, diff)
		}
		if !got.CheckedAt.Equal(step.c.At) {
			t.Errorf("%s: CheckedAt = %v, want %v (stale answers count as checks)", step.name, got.CheckedAt, step.c.At)
		}
		if !cmp.Equal(got.Scope, d.Scope) {
			t.Errorf("%s: the redemption-time Scope changed to %v", step.name, got.Scope)
		}
	}
	got, _ := s.Delegation(ctx, d.AuthorizationID)
	if !got.ExpiresAt.Equal(base.Add(time.Hour)) {
		t.Errorf("ExpiresAt = %v, want it moved earlier only (%v)", got.ExpiresAt, base.Add(time.Hour))
	}
	if _, err := s.RecordMissionCheck(ctx, uniq("nope"), service.MissionCheck{At: base, Version: 9}); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("RecordMissionCheck(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.Invalidate(ctx, d.AuthorizationID, base.Add(time.Hour), "revoked"); err != nil {
		t.Fatal(err)
	}
	applied, err := s.RecordMissionCheck(ctx, d.AuthorizationID, service.MissionCheck{At: base.Add(2 * time.Hour), State: pass.MissionSuspended, Version: 9})
	got, _ = s.Delegation(ctx, d.AuthorizationID)
	if err != nil || applied || got.MissionVersion != 5 || got.MissionState != pass.MissionActive {
		t.Errorf("RecordMissionCheck on an invalidated delegation = %v, %v; mission %s v%d", applied, err, got.MissionState, got.MissionVersion)
	}
}

// testMissionCheckRace: answers of many versions applied concurrently (two
// replicas, each with answers from lagging Authority replicas) end with
// the newest one, and exactly the answers not older than what was stored
// were applied.
func testMissionCheckRace(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	d.MissionVersion = 1
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			state := pass.MissionActive
			if i%2 == 1 {
				state = pass.MissionSuspended
			}
			if _, err := s.RecordMissionCheck(ctx, d.AuthorizationID, service.MissionCheck{At: base.Add(time.Duration(i) * time.Second),
				State: state, Version: int64(2 + i)}); err != nil {
				t.Errorf("RecordMissionCheck: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	got, err := s.Delegation(ctx, d.AuthorizationID)
	if err != nil {
		t.Fatal(err)
	}
	// The newest answer (version n+1, i = n-1, odd: suspended) wins.
	if got.MissionVersion != n+1 || got.MissionState != pass.MissionSuspended {
		t.Errorf("after the race: mission %s v%d, want suspended v%d", got.MissionState, got.MissionVersion, n+1)
	}
}
