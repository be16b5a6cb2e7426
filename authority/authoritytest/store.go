// Package authoritytest tests Authorities and Authority stores.
//
// # Overview
//
// [NewServer], in the spirit of net/http/httptest, serves an Authority
// built from the test's own configuration (its Approver, its Store) on a
// network with a real Service and a DNS server, over TLS on loopback, and
// returns clients already configured for it: a Harness that acquires
// passes as an agent would, an HTTP client and a discovery client.
//
// Every authority.Store must pass the conformance suite: [TestStore] runs
// it against stores its argument makes, each subtest in parallel on its
// own empty store (a store that also records assertions with its
// consumptions, an authority.RecordingStore, is held to that contract
// too); [RaceMission] races transitions of one mission across
// several stores sharing one database. [NewRequest], [Approval] and [T0]
// build records for a store's own tests.
//
// # Usage
//
//	func TestMyApprover(t *testing.T) {
//		srv := authoritytest.NewServer(t, authority.Config{
//			Identifier: "https://agents.example.test", TrustMode: pass.TrustEnterprise,
//			Approver: myApprover,
//		}, nil)
//		agent, err := srv.Agent(t.Context(), "read")
//		// ...
//	}
//
// A store implementation runs the suite from its own tests:
//
//	func TestConformance(t *testing.T) {
//		authoritytest.TestStore(t, func(t *testing.T) authority.Store {
//			return newEmptyStore(t)
//		})
//	}
//
// The function must return an empty store on every call.
package authoritytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// T0 is the fixed time the suite starts at.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	svcA = "https://a.example.com"
	svcB = "https://b.example.com"
)

var (
	active    = pass.DelegationActive
	suspended = pass.DelegationSuspended
	live      = []pass.DelegationState{active, suspended}
)

// TestStore runs the conformance suite against the stores newStore makes.
func TestStore(t *testing.T, newStore func(t *testing.T) authority.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s authority.Store)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"CreateConflict", testCreateConflict},
		{"ScopePlanRoundTrip", testScopePlan},
		{"DecideTransitions", testDecideTransitions},
		{"DecideTerminalImmutable", testDecideTerminalImmutable},
		{"DecideExpired", testDecideExpired},
		{"PendingList", testPendingList},
		{"RotatePass", testRotatePass},
		{"ConsumePass", testConsumePass},
		{"ConsumeWrongAudienceDoesNotConsume", testConsumeWrongAudience},
		{"ConsumeExpired", testConsumeExpired},
		{"ConsumeRetrySameAuthorization", testConsumeRetry},
		{"AuthorizationTransitions", testAuthorizationTransitions},
		{"AuthorizationTerminalImmutable", testAuthorizationTerminal},
		{"AuthorizationForeignService", testAuthorizationForeign},
		{"AuthorizationExpiry", testAuthorizationExpiry},
		{"NarrowScope", testNarrowScope},
		{"RevokeCascadesToChildren", testRevokeCascade},
		{"AuthorizationList", testAuthorizationList},
		{"RaceConsume", testRaceConsume},
		{"RaceDecide", testRaceDecide},
		{"RaceCloseAndNarrow", testRaceUpdate},
		{"TwoAuthoritiesValidateRaceHTTPS", testTwoAuthorities},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
	for _, tc := range missionTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
	runOptional(t, newStore, eventTests, "the store keeps no event outbox")
	for _, tc := range stageTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
	runOptional(t, newStore, recordingTests, "the store records no assertion with its consumption")
}

// runOptional runs tests of a capability C a store may have (an interface
// beyond authority.Store), each on its own new store, skipped with why
// when the store lacks it.
func runOptional[C any](t *testing.T, newStore func(t *testing.T) authority.Store, tests []struct {
	name string
	fn   func(t *testing.T, s authority.Store, c C)
}, why string) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			c, ok := s.(C)
			if !ok {
				t.Skip(why)
			}
			tc.fn(t, s, c)
		})
	}
}

var ctx = context.Background()

// NewRequest returns a pending request for svcA created at T0 that expires
// ten minutes later.
func NewRequest(id string) *authority.Request {
	return &authority.Request{
		MissionID: "msn_" + id, IDHash: "idhash-" + id, Status: pass.StatusPending, CreatedAt: T0, ExpiresAt: T0.Add(10 * time.Minute),
		Type: pass.BrowserSession, Service: svcA, User: "alex@corp.example", HarnessID: "claude-code",
		Cnf:             json.RawMessage(`{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`),
		HardenedBinding: true,
		AgentID:         "claude-code", Tier: dpop.TierAttested, AttestationIssuer: "https://vendor.example",
		TaskID: "t1", TaskDescription: "Triage tickets", TaskAttested: true,
		DestinationURL: svcA + "/inbox", AvailableScope: pass.Scope{"tickets:read", "tickets:write"},
	}
}

// Approval returns approved evidence granting scope at T0: the pass lives
// five minutes, the delegation one hour.
func Approval(scope ...string) authority.Evidence {
	return authority.Evidence{
		Status: pass.StatusApproved, DecidedBy: "rule:test", DecidedAt: T0, Reason: "test",
		Scope: pass.Scope(scope), PassExpiresAt: T0.Add(5 * time.Minute), AuthorizationExpiresAt: T0.Add(time.Hour),
	}
}

// approvedRequest stores an approved request with the given pass hash.
func approvedRequest(t *testing.T, s authority.Store, id, hash string) *authority.Request {
	t.Helper()
	r := NewRequest(id)
	r.Status = pass.StatusApproved
	e := Approval("tickets:read")
	r.Decision = &e
	r.PassHash = hash
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatalf("CreateRequest: %v", err)
	}
	return r
}

// redeemed stores an approved request and consumes its pass for svcA.
func redeemed(t *testing.T, s authority.Store, id string) *authority.Authorization {
	t.Helper()
	approvedRequest(t, s, "req-"+id, "hash-"+id)
	c, err := s.ConsumePass(ctx, "hash-"+id, svcA, id, T0.Add(time.Minute))
	if err != nil {
		t.Fatalf("ConsumePass: %v", err)
	}
	return c.Authorization
}

func wantErr(t *testing.T, op string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: error %v, want %v", op, got, want)
	}
}

var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

func testCreateAndGet(t *testing.T, s authority.Store) {
	r := NewRequest("r1")
	r.ProposedScope = pass.Scope{"tickets:read"}
	r.ProposedBy = "rule:x"
	r.ParentMissionID = "msn_parent"
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Request(ctx, "msn_r1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, got, cmpOpts...); d != "" {
		t.Errorf("Request (-want +got):\n%s", d)
	}
	// Callers own what they get: changing it changes nothing stored.
	got.Status = pass.StatusApproved
	got.AvailableScope[0] = "mutated"
	again, _ := s.Request(ctx, "msn_r1")
	if again.Status != pass.StatusPending || again.AvailableScope[0] != "tickets:read" {
		t.Errorf("store shares memory with callers: %+v", again)
	}
	r.AvailableScope[1] = "mutated-after-create"
	again, _ = s.Request(ctx, "msn_r1")
	if again.AvailableScope[1] != "tickets:write" {
		t.Errorf("store keeps the caller's slice")
	}
	_, err = s.Request(ctx, "msn_unknown")
	wantErr(t, "Request(unknown)", err, authority.ErrNotFound)
}

func testCreateConflict(t *testing.T, s authority.Store) {
	if err := s.CreateRequest(ctx, NewRequest("r1")); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "second CreateRequest", s.CreateRequest(ctx, NewRequest("r1")), authority.ErrConflict)
}

func testDecideTransitions(t *testing.T, s authority.Store) {
	for _, st := range []pass.Status{pass.StatusApproved, pass.StatusDenied, pass.StatusCanceled} {
		id := "r-" + string(st)
		if err := s.CreateRequest(ctx, NewRequest(id)); err != nil {
			t.Fatal(err)
		}
		e := Approval("tickets:read")
		e.Status = st
		got, err := DecideRequest(s, id, e, T0.Add(time.Minute))
		if err != nil {
			t.Fatalf("%s: %v", st, err)
		}
		if got.Status != st || got.Decision == nil || got.Decision.DecidedBy != "rule:test" {
			t.Errorf("%s: got %+v", st, got)
		}
		stored, _ := s.Request(ctx, "msn_"+id)
		if d := cmp.Diff(got, stored, cmpOpts...); d != "" {
			t.Errorf("%s: stored differs from returned (-returned +stored):\n%s", st, d)
		}
	}
	_, err := DecideRequest(s, "unknown", Approval(), T0)
	wantErr(t, "DecideRequest(unknown)", err, authority.ErrNotFound)
}

// Terminal states never change.
func testDecideTerminalImmutable(t *testing.T, s authority.Store) {
	if err := s.CreateRequest(ctx, NewRequest("r1")); err != nil {
		t.Fatal(err)
	}
	deny := authority.Evidence{Status: pass.StatusDenied, DecidedBy: "human:boss", DecidedAt: T0, Reason: "no"}
	if _, err := DecideRequest(s, "r1", deny, T0); err != nil {
		t.Fatal(err)
	}
	for _, st := range []pass.Status{pass.StatusApproved, pass.StatusDenied, pass.StatusCanceled} {
		e := Approval("x")
		e.Status = st
		_, err := DecideRequest(s, "r1", e, T0.Add(time.Second))
		wantErr(t, "decide after deny", err, authority.ErrNotPending)
	}
	got, _ := s.Request(ctx, "msn_r1")
	if got.Status != pass.StatusDenied || got.Decision.DecidedBy != "human:boss" {
		t.Errorf("terminal request changed: %+v", got.Decision)
	}
}

func testDecideExpired(t *testing.T, s authority.Store) {
	r := NewRequest("r1")
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	_, err := DecideRequest(s, "r1", Approval("x"), r.ExpiresAt)
	wantErr(t, "decide at expiry", err, authority.ErrExpired)
	got, _ := s.Request(ctx, "msn_r1")
	if got.StatusAt(r.ExpiresAt) != pass.StatusExpired || got.Decision != nil {
		t.Errorf("expired request: status %s decision %+v", got.StatusAt(r.ExpiresAt), got.Decision)
	}
}

func testPendingList(t *testing.T, s authority.Store) {
	for i, u := range []string{"a@corp.example", "b@corp.example", "a@corp.example", "c@corp.example"} {
		r := NewRequest(fmt.Sprintf("r%d", i))
		r.User = u
		r.CreatedAt = T0.Add(time.Duration(i) * time.Second)
		if i == 3 {
			r.ExpiresAt = T0.Add(time.Minute) // expires before the listing
		}
		if err := s.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := DecideRequest(s, "r1", Approval("x"), T0); err != nil {
		t.Fatal(err)
	}
	ids := func(rs []*authority.Request) []string {
		var out []string
		for _, r := range rs {
			out = append(out, strings.TrimPrefix(r.MissionID, "msn_"))
		}
		return out
	}
	now := T0.Add(2 * time.Minute)
	got, err := s.PendingRequests(ctx, authority.ListOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"r0", "r2"}, ids(got)); d != "" {
		t.Errorf("pending (-want +got):\n%s", d)
	}
	got, _ = s.PendingRequests(ctx, authority.ListOptions{Now: now, User: "A@corp.example", Limit: 1})
	if d := cmp.Diff([]string{"r0"}, ids(got)); d != "" {
		t.Errorf("pending by user, limit 1 (-want +got):\n%s", d)
	}
	got, _ = s.PendingRequests(ctx, authority.ListOptions{Now: now, Service: svcB})
	if len(got) != 0 {
		t.Errorf("pending for another service: %v", ids(got))
	}
}

func testRotatePass(t *testing.T, s authority.Store) {
	if err := s.CreateRequest(ctx, NewRequest("pending")); err != nil {
		t.Fatal(err)
	}
	_, err := s.RotatePass(ctx, "msn_pending", "h0", T0)
	wantErr(t, "rotate pending", err, authority.ErrNotPending)
	_, err = s.RotatePass(ctx, "msn_unknown", "h0", T0)
	wantErr(t, "rotate unknown", err, authority.ErrNotFound)

	approvedRequest(t, s, "r1", "h1")
	got, err := s.RotatePass(ctx, "msn_r1", "h2", T0.Add(time.Second))
	if err != nil || got.PassHash != "h2" {
		t.Fatalf("rotate: %v %+v", err, got)
	}
	_, err = s.ConsumePass(ctx, "h1", svcA, "z1", T0.Add(2*time.Second))
	wantErr(t, "consume rotated-out pass", err, authority.ErrNotFound)
	if _, err := s.ConsumePass(ctx, "h2", svcA, "z2", T0.Add(2*time.Second)); err != nil {
		t.Fatalf("consume current pass: %v", err)
	}
	_, err = s.RotatePass(ctx, "msn_r1", "h3", T0.Add(3*time.Second))
	wantErr(t, "rotate consumed", err, authority.ErrConsumed)

	approvedRequest(t, s, "r2", "h4")
	_, err = s.RotatePass(ctx, "msn_r2", "h5", T0.Add(5*time.Minute))
	wantErr(t, "rotate expired", err, authority.ErrExpired)
}

// A pass is consumed once, into an authorization that carries the approved
// scope and the task attestation; a pending request has no pass.
func testConsumePass(t *testing.T, s authority.Store) {
	r := approvedRequest(t, s, "r1", "h1")
	now := T0.Add(time.Minute)
	c, err := s.ConsumePass(ctx, "h1", svcA, "authz-1", now)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Authorization
	stored, _ := s.Request(ctx, "msn_r1")
	// The consumption returns the mission as stored after it, so the
	// Authority's answer needs no second read.
	if d := cmp.Diff(stored, c.Mission, cmpOpts...); d != "" {
		t.Errorf("consumed mission (-stored +returned):\n%s", d)
	}
	if c.Ancestors != nil {
		t.Errorf("a root mission's consumption returned ancestors %v", c.Ancestors)
	}
	want := r.Authorize("authz-1", now)
	if d := cmp.Diff(want, a, cmpOpts...); d != "" {
		t.Errorf("authorization (-want +got):\n%s", d)
	}
	if a.State != active || a.ExpiresAt != T0.Add(time.Hour) || !a.TaskAttested || a.Scope[0] != "tickets:read" {
		t.Errorf("authorization fields: %+v", a)
	}
	if stored.ConsumedAt != now || stored.AuthorizationID != "authz-1" {
		t.Errorf("request after consume: consumed %v authz %q", stored.ConsumedAt, stored.AuthorizationID)
	}
	got, err := s.Authorization(ctx, "authz-1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(a, got, cmpOpts...); d != "" {
		t.Errorf("Authorization (-consume +get):\n%s", d)
	}
	_, err = s.ConsumePass(ctx, "h1", svcA, "authz-2", now)
	wantErr(t, "second consume", err, authority.ErrConsumed)
	_, err = s.ConsumePass(ctx, "nope", svcA, "authz-3", now)
	wantErr(t, "unknown pass", err, authority.ErrNotFound)
	_, err = s.Authorization(ctx, "authz-2")
	wantErr(t, "authorization of failed consume", err, authority.ErrNotFound)

	// A pending or denied request has no redeemable pass.
	p := NewRequest("r2")
	p.PassHash = "h2"
	if err := s.CreateRequest(ctx, p); err != nil {
		t.Fatal(err)
	}
	_, err = s.ConsumePass(ctx, "h2", svcA, "authz-4", now)
	wantErr(t, "consume pending", err, authority.ErrNotFound)
}

// A wrong Service cannot burn the pass.
func testConsumeWrongAudience(t *testing.T, s authority.Store) {
	approvedRequest(t, s, "r1", "h1")
	now := T0.Add(time.Minute)
	for i := 0; i < 3; i++ {
		_, err := s.ConsumePass(ctx, "h1", svcB, fmt.Sprintf("bad-%d", i), now)
		wantErr(t, "wrong audience", err, authority.ErrWrongAudience)
	}
	r, _ := s.Request(ctx, "msn_r1")
	if !r.ConsumedAt.IsZero() {
		t.Fatal("wrong audience consumed the pass")
	}
	if _, err := s.ConsumePass(ctx, "h1", svcA, "good", now); err != nil {
		t.Fatalf("right audience after wrong ones: %v", err)
	}
	// Audience is checked before consumption state: B learns nothing.
	_, err := s.ConsumePass(ctx, "h1", svcB, "bad-x", now)
	wantErr(t, "wrong audience after consume", err, authority.ErrWrongAudience)
}

func testConsumeExpired(t *testing.T, s authority.Store) {
	approvedRequest(t, s, "r1", "h1")
	_, err := s.ConsumePass(ctx, "h1", svcA, "z", T0.Add(5*time.Minute))
	wantErr(t, "consume at pass expiry", err, authority.ErrExpired)
	if _, err := s.ConsumePass(ctx, "h1", svcA, "z", T0.Add(5*time.Minute-time.Nanosecond)); err != nil {
		t.Fatalf("consume just before expiry: %v", err)
	}
}

// A delegation is suspended, resumed, completed and revoked only from the
// states that allow it.
func testAuthorizationTransitions(t *testing.T, s authority.Store) {
	redeemed(t, s, "z1")
	now := T0.Add(2 * time.Minute)
	steps := []struct {
		from []pass.DelegationState
		to   pass.DelegationState
	}{
		{[]pass.DelegationState{active}, suspended},
		{[]pass.DelegationState{suspended}, active},
		{live, pass.DelegationCompleted},
	}
	for i, st := range steps {
		got, err := UpdateAuthorization(s, "z1", AuthUpdate{From: st.from, To: st.to, By: "op", Reason: fmt.Sprint(i)}, now)
		if err != nil {
			t.Fatalf("step %d to %s: %v", i, st.to, err)
		}
		if got.State != st.to || got.StateBy != "op" || got.StateReason != fmt.Sprint(i) || got.UpdatedAt != now {
			t.Errorf("step %d: %+v", i, got)
		}
	}
	got, _ := s.Authorization(ctx, "z1")
	if got.State != pass.DelegationCompleted || got.ClosedAt != now {
		t.Errorf("after complete: state %s closed %v", got.State, got.ClosedAt)
	}
	_, err := UpdateAuthorization(s, "unknown", AuthUpdate{From: live, To: pass.DelegationRevoked}, now)
	wantErr(t, "update unknown", err, authority.ErrNotFound)
	// Suspend applies only to active.
	redeemed(t, s, "z2")
	if _, err := UpdateAuthorization(s, "z2", AuthUpdate{From: []pass.DelegationState{active}, To: suspended}, now); err != nil {
		t.Fatal(err)
	}
	_, err = UpdateAuthorization(s, "z2", AuthUpdate{From: []pass.DelegationState{active}, To: suspended}, now)
	wantErr(t, "suspend suspended", err, authority.ErrState)
	got, _ = s.Authorization(ctx, "z2")
	if got.StateAt(now) != suspended {
		t.Errorf("suspended state: %s", got.StateAt(now))
	}
	if got, err := UpdateAuthorization(s, "z2", AuthUpdate{From: live, To: pass.DelegationRevoked}, now); err != nil || got.ClosedAt != now {
		t.Fatalf("revoke suspended: %v", err)
	}
}

// Closed delegations never come back.
func testAuthorizationTerminal(t *testing.T, s authority.Store) {
	for _, end := range []pass.DelegationState{pass.DelegationRevoked, pass.DelegationCompleted} {
		id := "z-" + string(end)
		redeemed(t, s, id)
		now := T0.Add(2 * time.Minute)
		if _, err := UpdateAuthorization(s, id, AuthUpdate{From: live, To: end}, now); err != nil {
			t.Fatal(err)
		}
		for _, to := range []pass.DelegationState{active, suspended, pass.DelegationRevoked, pass.DelegationCompleted} {
			_, err := UpdateAuthorization(s, id, AuthUpdate{From: live, To: to}, now.Add(time.Second))
			wantErr(t, fmt.Sprintf("%s -> %s", end, to), err, authority.ErrState)
		}
		_, err := UpdateAuthorization(s, id, AuthUpdate{From: live, Scope: pass.Scope{}}, now)
		wantErr(t, "narrow closed", err, authority.ErrState)
		got, _ := s.Authorization(ctx, id)
		if got.State != end || got.ClosedAt != now {
			t.Errorf("%s changed: %+v", end, got)
		}
	}
}

// Only the redeeming Service may change or list its authorization; to any
// other it does not exist.
func testAuthorizationForeign(t *testing.T, s authority.Store) {
	redeemed(t, s, "z1")
	now := T0.Add(2 * time.Minute)
	_, err := UpdateAuthorization(s, "z1", AuthUpdate{From: live, To: pass.DelegationRevoked, Service: svcB}, now)
	wantErr(t, "foreign close", err, authority.ErrNotFound)
	got, _ := s.Authorization(ctx, "z1")
	if got.State != active {
		t.Fatalf("foreign close changed the state to %s", got.State)
	}
	if _, err := UpdateAuthorization(s, "z1", AuthUpdate{From: live, To: pass.DelegationRevoked, Service: svcA}, now); err != nil {
		t.Fatalf("own close: %v", err)
	}
}

func testAuthorizationExpiry(t *testing.T, s authority.Store) {
	a := redeemed(t, s, "z1")
	if a.StateAt(a.ExpiresAt.Add(-time.Nanosecond)) != active || a.StateAt(a.ExpiresAt) != pass.DelegationExpired {
		t.Fatalf("StateAt around expiry")
	}
	_, err := UpdateAuthorization(s, "z1", AuthUpdate{From: live, To: pass.DelegationRevoked}, a.ExpiresAt)
	wantErr(t, "revoke expired", err, authority.ErrExpired)
	list, _ := s.Authorizations(ctx, authority.ListOptions{Now: a.ExpiresAt})
	if len(list) != 0 {
		t.Errorf("expired authorization listed")
	}
}

// NarrowScope: narrow only, never widen.
func testNarrowScope(t *testing.T, s authority.Store) {
	r := NewRequest("r1")
	r.Status = pass.StatusApproved
	e := Approval("tickets:read", "tickets:write")
	r.Decision = &e
	r.PassHash = "h1"
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumePass(ctx, "h1", svcA, "z1", T0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	now := T0.Add(2 * time.Minute)
	got, err := UpdateAuthorization(s, "z1", AuthUpdate{From: live, Scope: pass.Scope{"tickets:read"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(pass.Scope{"tickets:read"}, got.Scope); d != "" {
		t.Errorf("narrowed scope (-want +got):\n%s", d)
	}
	if d := cmp.Diff(pass.Scope{"tickets:read", "tickets:write"}, got.GrantedScope); d != "" {
		t.Errorf("granted scope must stay (-want +got):\n%s", d)
	}
	for _, wider := range []pass.Scope{{"tickets:read", "tickets:write"}, {"admin"}, {"*"}} {
		_, err := UpdateAuthorization(s, "z1", AuthUpdate{From: live, Scope: wider}, now)
		wantErr(t, fmt.Sprintf("widen to %v", wider), err, authority.ErrScopeWiden)
	}
	got, _ = s.Authorization(ctx, "z1")
	if d := cmp.Diff(pass.Scope{"tickets:read"}, got.Scope); d != "" || got.State != active {
		t.Errorf("scope after refused widening (-want +got):\n%s", d)
	}
}

// Sub-delegation: revoking a parent revokes its live children.
func testRevokeCascade(t *testing.T, s authority.Store) {
	parent := redeemed(t, s, "parent")
	child := NewRequest("child-req")
	child.Status = pass.StatusApproved
	child.ParentMissionID = parent.MissionID
	e := Approval("tickets:read")
	child.Decision = &e
	child.PassHash = "hc"
	if err := s.CreateRequest(ctx, child); err != nil {
		t.Fatal(err)
	}
	cc, err := s.ConsumePass(ctx, "hc", svcA, "child", T0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	c := cc.Authorization
	if c.MissionID != child.MissionID {
		t.Fatalf("child MissionID %q", c.MissionID)
	}
	// The ancestors checked come back with the consumption.
	if len(cc.Ancestors) != 1 || cc.Ancestors[0].MissionID != parent.MissionID || cc.Mission.MissionID != child.MissionID {
		t.Fatalf("child's consumption: mission %+v, ancestors %+v; want the child and its parent", cc.Mission, cc.Ancestors)
	}
	now := T0.Add(3 * time.Minute)
	if _, err := UpdateAuthorization(s, parent.ID, AuthUpdate{From: live, To: pass.DelegationRevoked}, now); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Authorization(ctx, "child")
	if got.State != pass.DelegationRevoked || got.ClosedAt != now {
		t.Errorf("child after parent revoked: %s closed %v", got.State, got.ClosedAt)
	}
}

func testAuthorizationList(t *testing.T, s authority.Store) {
	redeemed(t, s, "z1")
	redeemed(t, s, "z2")
	redeemed(t, s, "z3")
	now := T0.Add(2 * time.Minute)
	if _, err := UpdateAuthorization(s, "z2", AuthUpdate{From: live, To: pass.DelegationRevoked}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := UpdateAuthorization(s, "z3", AuthUpdate{From: live, To: suspended}, now); err != nil {
		t.Fatal(err)
	}
	list, err := s.Authorizations(ctx, authority.ListOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]pass.DelegationState{}
	for _, a := range list {
		got[a.ID] = a.State
	}
	if d := cmp.Diff(map[string]pass.DelegationState{"z1": active, "z3": suspended}, got); d != "" {
		t.Errorf("live authorizations (-want +got):\n%s", d)
	}
	list, _ = s.Authorizations(ctx, authority.ListOptions{Now: now, Service: svcB})
	if len(list) != 0 {
		t.Errorf("authorizations of another service listed")
	}
}

// Of 100 concurrent consumptions of one pass exactly one succeeds,
// the others see ErrConsumed.
func testRaceConsume(t *testing.T, s authority.Store) {
	approvedRequest(t, s, "r1", "h1")
	var ok, consumed, other atomic.Int32
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aud := svcA
			if i%10 == 0 {
				aud = svcB // wrong Services race too, and never win
			}
			_, err := s.ConsumePass(ctx, "h1", aud, fmt.Sprintf("z%d", i), T0.Add(time.Minute))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, authority.ErrConsumed) || errors.Is(err, authority.ErrWrongAudience):
				consumed.Add(1)
			default:
				other.Add(1)
				t.Errorf("consume: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || consumed.Load() != 99 || other.Load() != 0 {
		t.Fatalf("successes %d, refusals %d, other %d; want 1, 99, 0", ok.Load(), consumed.Load(), other.Load())
	}
	list, _ := s.Authorizations(ctx, authority.ListOptions{Now: T0.Add(time.Minute)})
	if len(list) != 1 {
		t.Fatalf("%d authorizations created, want 1", len(list))
	}
}

// 100 concurrent decisions on one pending request: exactly one wins.
func testRaceDecide(t *testing.T, s authority.Store) {
	if err := s.CreateRequest(ctx, NewRequest("r1")); err != nil {
		t.Fatal(err)
	}
	var ok atomic.Int32
	var winner atomic.Value
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := Approval("tickets:read")
			if i%2 == 1 {
				e = authority.Evidence{Status: pass.StatusDenied, DecidedAt: T0}
			}
			e.DecidedBy = fmt.Sprintf("human:%d", i)
			_, err := DecideRequest(s, "r1", e, T0.Add(time.Second))
			switch {
			case err == nil:
				ok.Add(1)
				winner.Store(e.DecidedBy)
			case !errors.Is(err, authority.ErrNotPending):
				t.Errorf("decide: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d decisions won, want 1", ok.Load())
	}
	r, _ := s.Request(ctx, "msn_r1")
	if r.Decision == nil || r.Decision.DecidedBy != winner.Load() {
		t.Fatalf("stored decision %+v, winner %v", r.Decision, winner.Load())
	}
}

// Concurrent closes and narrowings: exactly one close wins and the result is
// consistent.
func testRaceUpdate(t *testing.T, s authority.Store) {
	redeemed(t, s, "z1")
	var closed atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			to := pass.DelegationRevoked
			if i%2 == 0 {
				to = pass.DelegationCompleted
			}
			if _, err := UpdateAuthorization(s, "z1", AuthUpdate{From: live, To: to}, T0.Add(2*time.Minute)); err == nil {
				closed.Add(1)
			} else if !errors.Is(err, authority.ErrState) {
				t.Errorf("close: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			_, err := UpdateAuthorization(s, "z1", AuthUpdate{From: live, Scope: pass.Scope{}}, T0.Add(2*time.Minute))
			if err != nil && !errors.Is(err, authority.ErrState) {
				t.Errorf("narrow: %v", err)
			}
		}()
	}
	wg.Wait()
	if closed.Load() != 1 {
		t.Fatalf("%d closes won, want 1", closed.Load())
	}
}

// testScopePlan stores a request with a requested scope, a proposal and
// effects, decides it with a scope basis and a disclosure hash, and reads
// all of it back, with the "proposed" history entry after "requested".
func testScopePlan(t *testing.T, s authority.Store) {
	r := NewRequest("plan")
	r.RequestedScope = pass.Scope{"tickets:read", "tickets:delete"}
	r.ProposedScope = pass.Scope{"tickets:read"}
	r.ProposedBy = "compiler:templates@v1"
	r.ScopeDecision = pass.ScopeNarrowed
	r.Effects = map[string]authority.Effect{"tickets:read": authority.EffectRead, "tickets:write": authority.EffectWrite}
	r.Proposal = &authority.Proposal{
		Scopes:   []authority.Rationale{{Scope: "tickets:read", Basis: authority.BasisTemplate, Source: "triage@3", Why: "lists tickets"}},
		Excluded: []authority.Rationale{{Scope: "tickets:delete", Why: "not selected by template triage@3"}},
		Compiler: "templates", Version: "v1", InputSHA256: strings.Repeat("ab", 32),
		Stages: []pass.Stage{{Name: "discover", Scope: pass.Scope{"tickets:read"}, Gate: "auto"}},
	}
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Request(ctx, r.MissionID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, got, cmpOpts...); d != "" {
		t.Errorf("Request (-want +got):\n%s", d)
	}
	got.Proposal.Scopes[0].Why = "mutated"
	if again, _ := s.Request(ctx, r.MissionID); again.Proposal.Scopes[0].Why != "lists tickets" {
		t.Errorf("store shares the proposal with callers")
	}
	e := Approval("tickets:read")
	e.DecidedBy, e.ScopeDecision, e.DisclosureSHA256 = "human:lee", pass.ScopeHumanEdited, strings.Repeat("0f", 32)
	out, err := s.TransitionMission(ctx, r.MissionID, authority.MissionChange{From: []pass.MissionState{pass.MissionPending},
		To: pass.MissionActive, By: e.DecidedBy, Decision: &e}, T0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.Request(ctx, r.MissionID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Decision == nil || got.Decision.ScopeDecision != pass.ScopeHumanEdited || got.Decision.DisclosureSHA256 != e.DisclosureSHA256 {
		t.Errorf("decision after approval = %+v, want scope basis and disclosure hash kept", got.Decision)
	}
	if d := cmp.Diff(out, got, cmpOpts...); d != "" {
		t.Errorf("TransitionMission answer and stored request differ (-answer +stored):\n%s", d)
	}
	recs, err := s.History(ctx, r.MissionID)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, rec := range recs {
		var e struct{ Type string }
		if err := json.Unmarshal(rec.Body, &e); err != nil {
			t.Fatal(err)
		}
		types = append(types, e.Type)
	}
	if want := []string{"requested", "proposed", "approved"}; !slices.Equal(types, want) {
		t.Errorf("history types = %v, want %v", types, want)
	}
}
