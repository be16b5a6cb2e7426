package authoritytest

// The event outbox part of the conformance suite, for stores that
// implement authority.EventStore: SETs are queued in the step that commits
// a change, claimed per subject in order, and polled and acknowledged per
// Service.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

var eventTests = []struct {
	name string
	fn   func(t *testing.T, s authority.Store, es authority.EventStore)
}{
	{"EventsQueuedWithTheChange", testEventsQueued},
	{"EventsTerminalSupersedes", testEventsTerminal},
	{"EventsClaimPerSubject", testEventsClaim},
	{"EventsPollAndAck", testEventsPoll},
	{"EventsWait", testEventsWait},
	{"EventsNewerSupersedesUnclaimed", testEventsSupersede},
	{"EventsBoundKeepsOtherSubjects", testEventsBound},
	{"EventsDescendantStageCascadeO9", testEventsDescendantStageCascade},
}

// events records what a MissionChange.Events builder was called with and
// builds an event whose jti names the mission and version.
type events struct {
	mu    sync.Mutex
	calls []authority.MissionEvent
	fail  error
	// plain makes only terminal events Keep, so a suspension counts as a
	// narrowing that may be superseded.
	plain bool
}

func (b *events) build(e authority.MissionEvent) (*authority.OutboxEvent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	b.calls = append(b.calls, e)
	terminal := e.Mission.State.Terminal()
	return &authority.OutboxEvent{
		JTI: fmt.Sprintf("%s-v%d", e.Mission.MissionID, e.Mission.Version), Service: e.Authorization.Service, Subject: e.Authorization.ID,
		Push: e.Receiver.DeliveryMethod == pass.DeliveryPush, Receiver: e.Receiver.Receiver, Terminal: terminal,
		Keep: terminal || !b.plain && e.Change.To == pass.MissionSuspended, SET: "set." + e.Mission.MissionID, CreatedAt: T0, NextAt: T0,
	}, nil
}

func (b *events) change(to pass.MissionState, cause string, from ...pass.MissionState) authority.MissionChange {
	c := change(to, cause, from...)
	c.Events = b.build
	return c
}

func pushTo(svc string) *pass.ServiceEvents {
	return &pass.ServiceEvents{DeliveryMethod: pass.DeliveryPush, Receiver: svc + "/events", EventsAccepted: []string{"x"}}
}

// family stores a redeemed root mission for svcA and a redeemed child and
// grandchild, returning the mission ids.
func family(t *testing.T, s authority.Store, id string) (root string) {
	t.Helper()
	redeemed(t, s, id)
	root = "msn_req-" + id
	parent := root
	for i := range 2 {
		cid := fmt.Sprintf("%s-c%d", id, i+1)
		r := NewRequest(cid)
		r.Status, r.ParentMissionID, r.PassHash = pass.StatusApproved, parent, "hash-"+cid
		e := Approval("tickets:read")
		r.Decision = &e
		if err := s.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConsumePass(ctx, r.PassHash, svcA, "z"+cid, T0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		parent = r.MissionID
	}
	return root
}

func claimAll(t *testing.T, es authority.EventStore, owner string, now time.Time) []*authority.OutboxEvent {
	t.Helper()
	evs, err := es.ClaimEvents(ctx, owner, now, now.Add(time.Minute), 100, 100)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func jtis(evs []*authority.OutboxEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.JTI)
	}
	slices.Sort(out)
	return out
}

// A change queues one event per affected authorization, the descendants'
// in the same step (the builder sees the root's change for each), only
// for Services with a recorded receiver; a builder failure fails the
// change, which then leaves no trace.
func testEventsQueued(t *testing.T, s authority.Store, es authority.EventStore) {
	now := T0.Add(2 * time.Minute)
	act, sus := pass.MissionActive, pass.MissionSuspended
	root := family(t, s, "q")
	b := &events{}
	// No receiver recorded: nothing is built or queued.
	if _, err := s.TransitionMission(ctx, root, b.change(sus, "", act), now); err != nil {
		t.Fatal(err)
	}
	if len(b.calls) != 0 || len(claimAll(t, es, "o", now)) != 0 {
		t.Fatalf("events without a receiver: %d built", len(b.calls))
	}
	if err := es.SetEventReceiver(ctx, svcA, pushTo(svcA)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionMission(ctx, root, b.change(act, "", sus), now); err != nil {
		t.Fatal(err)
	}
	if len(b.calls) != 3 {
		t.Fatalf("builder called %d times, want 3 (root, child, grandchild)", len(b.calls))
	}
	for _, c := range b.calls {
		if c.Root.MissionID != root || c.Change.To != act || c.Receiver.Receiver != svcA+"/events" || c.Authorization.MissionID != c.Mission.MissionID {
			t.Errorf("builder call %+v", c)
		}
	}
	if b.calls[0].Prior != sus {
		t.Errorf("root prior state %s, want suspended", b.calls[0].Prior)
	}
	got := jtis(claimAll(t, es, "o", now))
	want := []string{"msn_q-c1-v4", "msn_q-c2-v4", root + "-v4"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("queued %v, want %v", got, want)
	}

	// A failing builder fails the change: state, history and outbox stay.
	b.fail = errors.New("signer down")
	before, _ := s.Request(ctx, root)
	if _, err := s.TransitionMission(ctx, root, b.change(sus, "", act), now); err == nil {
		t.Fatal("change committed although its events could not be built")
	}
	after, _ := s.Request(ctx, root)
	if after.Version != before.Version || after.State != before.State {
		t.Errorf("mission moved to %s v%d after a failed change", after.State, after.Version)
	}
	// A note moves no version and queues nothing.
	b.fail = nil
	n := len(b.calls)
	note := authority.MissionChange{From: []pass.MissionState{act}, Note: "observation", By: "service:x", Events: b.build}
	if _, err := s.TransitionMission(ctx, root, note, now); err != nil {
		t.Fatal(err)
	}
	if len(b.calls) != n {
		t.Error("a note built an event")
	}
}

// A terminal event supersedes the pending events of its subject (fix 9),
// but not one in flight.
func testEventsTerminal(t *testing.T, s authority.Store, es authority.EventStore) {
	now := T0.Add(2 * time.Minute)
	act, sus := pass.MissionActive, pass.MissionSuspended
	redeemed(t, s, "t")
	id := "msn_req-t"
	if err := es.SetEventReceiver(ctx, svcA, pushTo(svcA)); err != nil {
		t.Fatal(err)
	}
	b := &events{}
	for _, c := range []authority.MissionChange{b.change(sus, "", act), b.change(act, "", sus), b.change(sus, "", act)} {
		if _, err := s.TransitionMission(ctx, id, c, now); err != nil {
			t.Fatal(err)
		}
	}
	// The first is in flight.
	if got := jtis(claimAll(t, es, "o", now)); !slices.Equal(got, []string{id + "-v3"}) {
		t.Fatalf("claimed %v, want the oldest only", got)
	}
	if _, err := s.TransitionMission(ctx, id, b.change(pass.MissionRevoked, pass.CauseOperator, sus), now); err != nil {
		t.Fatal(err)
	}
	if err := es.FinishEvent(ctx, "o", id+"-v3", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := jtis(claimAll(t, es, "o", now)); !slices.Equal(got, []string{id + "-v6"}) {
		t.Errorf("after the revocation, claimed %v, want only the terminal event", got)
	}
}

// Claims: the oldest event of a subject only, none while one of its
// subject is leased, at most perService per Service, retries not before
// they are due, and a lapsed lease claimable by another owner, whose
// finish then wins.
func testEventsClaim(t *testing.T, s authority.Store, es authority.EventStore) {
	now := T0.Add(2 * time.Minute)
	act, sus := pass.MissionActive, pass.MissionSuspended
	if err := es.SetEventReceiver(ctx, svcA, pushTo(svcA)); err != nil {
		t.Fatal(err)
	}
	b := &events{}
	var ids []string
	for i := range 6 {
		redeemed(t, s, fmt.Sprintf("c%d", i))
		ids = append(ids, fmt.Sprintf("msn_req-c%d", i))
	}
	for _, id := range ids {
		for _, c := range []authority.MissionChange{b.change(sus, "", act), b.change(act, "", sus)} {
			if _, err := s.TransitionMission(ctx, id, c, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, err := es.ClaimEvents(ctx, "a", now, now.Add(time.Minute), 100, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 4 {
		t.Fatalf("claimed %d, want 4 (per-Service bound)", len(first))
	}
	for _, e := range first {
		if e.JTI != "msn_req-"+e.Subject+"-v3" || e.SET == "" || !e.Push {
			t.Errorf("claimed %+v, want the subject's oldest (v3)", e)
		}
	}
	// Two more subjects fit once two finish; their second events wait.
	if err := es.FinishEvent(ctx, "a", first[0].JTI, time.Time{}); err != nil {
		t.Fatal(err)
	}
	retry := now.Add(time.Second)
	if err := es.FinishEvent(ctx, "a", first[1].JTI, retry); err != nil {
		t.Fatal(err)
	}
	second, _ := es.ClaimEvents(ctx, "a", now, now.Add(time.Minute), 100, 4)
	if len(second) != 2 {
		t.Fatalf("second claim: %v", jtis(second))
	}
	for _, e := range second {
		if e.Subject == first[1].Subject {
			t.Errorf("a retry was claimed before it was due: %s", e.JTI)
		}
		if e.Subject == first[0].Subject && e.JTI != "msn_req-"+e.Subject+"-v4" {
			t.Errorf("after the first finished, claimed %s", e.JTI)
		}
	}
	// A lapsed lease goes to another owner; the first owner's finish is
	// then refused.
	later := now.Add(2 * time.Minute)
	third, _ := es.ClaimEvents(ctx, "b", later, later.Add(time.Minute), 100, 100)
	var stolen *authority.OutboxEvent
	for _, e := range third {
		if e.JTI == first[2].JTI {
			stolen = e
		}
		if e.JTI == first[1].JTI && e.Attempts != 1 {
			t.Errorf("retried event has %d attempts, want 1", e.Attempts)
		}
	}
	if stolen == nil {
		t.Fatalf("lapsed lease not reclaimed: %v", jtis(third))
	}
	if err := es.FinishEvent(ctx, "a", first[2].JTI, time.Time{}); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("finish by the lapsed owner: %v, want ErrNotFound", err)
	}
	if err := es.FinishEvent(ctx, "b", first[2].JTI, time.Time{}); err != nil {
		t.Errorf("finish by the new owner: %v", err)
	}
}

// Poll events are never claimed for push; they are polled oldest first
// by their Service only, acknowledged by it only, and kept 24 hours.
func testEventsPoll(t *testing.T, s authority.Store, es authority.EventStore) {
	now := T0.Add(2 * time.Minute)
	act, sus := pass.MissionActive, pass.MissionSuspended
	if err := es.SetEventReceiver(ctx, svcA, &pass.ServiceEvents{DeliveryMethod: pass.DeliveryPoll}); err != nil {
		t.Fatal(err)
	}
	redeemed(t, s, "p")
	id := "msn_req-p"
	b := &events{}
	// v4 (not Keep) is superseded by v5; v3 and v5 (suspensions) stay.
	for _, c := range []authority.MissionChange{b.change(sus, "", act), b.change(act, "", sus), b.change(sus, "", act), b.change(act, "", sus)} {
		if _, err := s.TransitionMission(ctx, id, c, now); err != nil {
			t.Fatal(err)
		}
	}
	if got := claimAll(t, es, "o", now); len(got) != 0 {
		t.Errorf("poll events claimed for push: %v", jtis(got))
	}
	got, more, err := es.PollEvents(ctx, svcA, 2, now)
	if err != nil || !more || len(got) != 2 || got[0].JTI != id+"-v3" || got[1].JTI != id+"-v5" {
		t.Fatalf("poll: %v more=%v err=%v", jtis(got), more, err)
	}
	if other, _, _ := es.PollEvents(ctx, svcB, 10, now); len(other) != 0 {
		t.Errorf("another Service polled %v", jtis(other))
	}
	if err := es.AckEvents(ctx, svcB, []string{id + "-v3"}); err != nil {
		t.Fatal(err)
	}
	if err := es.AckEvents(ctx, svcA, []string{id + "-v3", id + "-v5", "unknown"}); err != nil {
		t.Fatal(err)
	}
	got, more, _ = es.PollEvents(ctx, svcA, 10, now)
	if more || len(got) != 1 || got[0].JTI != id+"-v6" {
		t.Errorf("after the acks: %v more=%v", jtis(got), more)
	}
	if got, _, _ = es.PollEvents(ctx, svcA, 10, T0.Add(authority.OutboxRetention+time.Second)); len(got) != 0 {
		t.Errorf("kept beyond 24 h: %v", jtis(got))
	}
}

// WaitEvents returns at once when the generation is past after, and
// otherwise when a change queues an event.
func testEventsWait(t *testing.T, s authority.Store, es authority.EventStore) {
	now := T0.Add(2 * time.Minute)
	if err := es.SetEventReceiver(ctx, svcA, pushTo(svcA)); err != nil {
		t.Fatal(err)
	}
	redeemed(t, s, "w")
	gen, err := es.WaitEvents(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	woke := make(chan int64, 1)
	go func() {
		g, err := es.WaitEvents(ctx, gen)
		if err != nil {
			t.Error(err)
		}
		woke <- g
	}()
	b := &events{}
	if _, err := s.TransitionMission(ctx, "msn_req-w", b.change(pass.MissionSuspended, "", pass.MissionActive), now); err != nil {
		t.Fatal(err)
	}
	if g := <-woke; g <= gen {
		t.Errorf("woke with generation %d, not past %d", g, gen)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	g, _ := es.WaitEvents(ctx, -1)
	if _, err := es.WaitEvents(cctx, g); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}

// A newer event of a subject supersedes its older events that are neither
// Keep nor in flight (the receiver narrows to the newer one and marks the
// version gap stale, so nothing is lost); Keep events and a leased one
// stay, and other subjects are untouched.
func testEventsSupersede(t *testing.T, s authority.Store, es authority.EventStore) {
	now := T0.Add(2 * time.Minute)
	act, sus := pass.MissionActive, pass.MissionSuspended
	if err := es.SetEventReceiver(ctx, svcA, pushTo(svcA)); err != nil {
		t.Fatal(err)
	}
	redeemed(t, s, "s1")
	redeemed(t, s, "s2")
	id1, id2 := "msn_req-s1", "msn_req-s2"
	b := &events{}
	// s2: one resumption (not Keep) that s1's flood must not touch.
	for _, c := range []authority.MissionChange{b.change(sus, "", act), b.change(act, "", sus)} {
		if _, err := s.TransitionMission(ctx, id2, c, now); err != nil {
			t.Fatal(err)
		}
	}
	// s1: v3 suspended (Keep), leased; then v4 resumed, v5 suspended
	// (Keep), v6 resumed, v7 suspended, v8 resumed.
	if _, err := s.TransitionMission(ctx, id1, b.change(sus, "", act), now); err != nil {
		t.Fatal(err)
	}
	first, err := es.ClaimEvents(ctx, "o", now, now.Add(time.Minute), 100, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := jtis(first); !slices.Equal(got, []string{id1 + "-v3", id2 + "-v3"}) {
		t.Fatalf("claimed %v", got)
	}
	for range 2 {
		for _, c := range []authority.MissionChange{b.change(act, "", sus), b.change(sus, "", act)} {
			if _, err := s.TransitionMission(ctx, id1, c, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.TransitionMission(ctx, id1, b.change(act, "", sus), now); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range first {
		if err := es.FinishEvent(ctx, "o", e.JTI, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		evs := claimAll(t, es, "o", now)
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			got = append(got, e.JTI)
			if err := es.FinishEvent(ctx, "o", e.JTI, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.Sort(got)
	want := []string{id1 + "-v5", id1 + "-v7", id1 + "-v8", id2 + "-v4"}
	if !slices.Equal(got, want) {
		t.Errorf("delivered after the leased ones %v, want %v (v4 and v6 superseded)", got, want)
	}
}

// The per-Service bound never drops another subject's event that nothing
// superseded: one mission's flood of narrowing events coalesces to its
// newest, and another mission's narrowing survives it.
func testEventsBound(t *testing.T, s authority.Store, es authority.EventStore) {
	now := T0.Add(2 * time.Minute)
	act, sus := pass.MissionActive, pass.MissionSuspended
	if err := es.SetEventReceiver(ctx, svcA, &pass.ServiceEvents{DeliveryMethod: pass.DeliveryPoll}); err != nil {
		t.Fatal(err)
	}
	redeemed(t, s, "victim")
	redeemed(t, s, "flood")
	b := &events{plain: true}
	if _, err := s.TransitionMission(ctx, "msn_req-victim", b.change(sus, "", act), now); err != nil {
		t.Fatal(err)
	}
	from, to := act, sus
	for range authority.MaxOutboxPerService + 1 {
		if _, err := s.TransitionMission(ctx, "msn_req-flood", b.change(to, "", from), now); err != nil {
			t.Fatal(err)
		}
		from, to = to, from
	}
	got, more, err := es.PollEvents(ctx, svcA, 10, now)
	if err != nil {
		t.Fatal(err)
	}
	last := fmt.Sprintf("msn_req-flood-v%d", 2+authority.MaxOutboxPerService+1)
	if want := []string{last, "msn_req-victim-v3"}; more || !slices.Equal(jtis(got), want) {
		t.Errorf("after the flood, queued %v more=%v, want %v", jtis(got), more, want)
	}
}
