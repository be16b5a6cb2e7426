package authority

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Review O2: at the per-Service bound, a new SET that neither ends nor
// suspends a delegation is refused; no pending SET of another subject is
// ever dropped for it (only a newer SET of the same subject supersedes
// one), and a kept SET is queued beyond the bound.
func TestReviewOutboxBoundRefusesNewNotOthers(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := NewMemoryStore()
	ev := func(jti, subject string, keep bool) *OutboxEvent {
		return &OutboxEvent{JTI: jti, Service: "https://a.example", Subject: subject, Keep: keep, CreatedAt: now}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range MaxOutboxPerService {
		if !m.enqueueLocked(ev(fmt.Sprintf("j%d", i), fmt.Sprintf("s%d", i), i%2 == 0), now) {
			t.Fatalf("j%d refused below the bound", i)
		}
	}
	if m.enqueueLocked(ev("new", "other", false), now) {
		t.Error("a droppable SET of a new subject was queued over a full bound")
	}
	q := m.events.queue["https://a.example"]
	if len(q) != MaxOutboxPerService || q[0].JTI != "j0" || q[1].JTI != "j1" {
		t.Fatalf("%d queued, first %s %s: another subject's SET was dropped", len(q), q[0].JTI, q[1].JTI)
	}
	// A newer SET of s1 supersedes j1 and takes its place.
	if !m.enqueueLocked(ev("j1b", "s1", false), now) {
		t.Error("a SET superseding its subject's pending one was refused")
	}
	if _, ok := m.events.byJTI["j1"]; ok {
		t.Error("the superseded j1 is still queued")
	}
	// A newer SET of s0 leaves the kept j0 and is refused.
	if m.enqueueLocked(ev("j0b", "s0", false), now) {
		t.Error("a droppable SET was queued over a full bound of another subject's kept one")
	}
	if _, ok := m.events.byJTI["j0"]; !ok {
		t.Error("a kept SET (j0) was dropped")
	}
	if !m.enqueueLocked(ev("kept", "other", true), now) || len(m.events.queue["https://a.example"]) != MaxOutboxPerService+1 {
		t.Error("a kept SET was refused at the bound")
	}
}

// Audit 7, M2: acknowledging, finishing and expiring SETs removes exactly
// those, in one pass over a queue however many go at once (one by one,
// each moved the rest of the queue: a second under the lock for 30,000
// expired), and the queue keeps its order.
func TestOutboxDropsInOnePass(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const svc = "https://a.example"
	m := NewMemoryStore()
	m.mu.Lock()
	for i := range 3000 {
		at := now.Add(time.Duration(i) * time.Second)
		if !m.enqueueLocked(&OutboxEvent{JTI: fmt.Sprintf("j%d", i), Service: svc, Subject: fmt.Sprintf("s%d", i), Keep: true,
			Push: i%3 == 0, CreatedAt: at}, at) {
			t.Fatal("refused")
		}
	}
	m.mu.Unlock()
	jtis := func() []string {
		m.mu.Lock()
		defer m.mu.Unlock()
		var out []string
		for _, e := range m.events.queue[svc] {
			out = append(out, e.JTI)
		}
		if len(out) != len(m.events.byJTI) {
			t.Fatalf("%d queued, %d indexed by jti", len(out), len(m.events.byJTI))
		}
		return out
	}
	// Acknowledge every fourth poll SET (and one of another Service,
	// which must stay).
	var ack []string
	for i := 1; i < 3000; i += 4 {
		if i%3 != 0 {
			ack = append(ack, fmt.Sprintf("j%d", i))
		}
	}
	if err := m.AckEvents(ctx, "https://other.example", []string{"j2"}); err != nil {
		t.Fatal(err)
	}
	if err := m.AckEvents(ctx, svc, ack); err != nil {
		t.Fatal(err)
	}
	left := jtis()
	if len(left) != 3000-len(ack) || !slices.IsSortedFunc(left, func(a, b string) int { return cmp.Compare(num(a), num(b)) }) {
		t.Fatalf("%d left after %d acks, or out of order", len(left), len(ack))
	}
	if !slices.Contains(left, "j2") || slices.Contains(left, "j1") {
		t.Fatal("the acknowledged SETs are not exactly the ones gone")
	}
	// Finish one pushed SET: it alone goes.
	m.mu.Lock()
	e := m.events.byJTI["j300"]
	e.owner = "w"
	m.mu.Unlock()
	if err := m.FinishEvent(ctx, "w", "j300", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := jtis(); len(got) != len(left)-1 || slices.Contains(got, "j300") {
		t.Fatalf("finishing j300: %d left", len(got))
	}
	// Expire the first 1,000 seconds' worth.
	m.mu.Lock()
	m.pruneEventsLocked(now.Add(OutboxRetention + 1000*time.Second))
	m.mu.Unlock()
	for _, j := range jtis() {
		if num(j) < 1000 {
			t.Fatalf("%s outlived its retention", j)
		}
	}
}

func num(jti string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(jti, "j"))
	return n
}

// BenchmarkOutboxExpire: expiring 30,000 queued SETs of one Service.
func BenchmarkOutboxExpire(b *testing.B) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for b.Loop() {
		b.StopTimer()
		m := NewMemoryStore()
		m.mu.Lock()
		for i := range 30_000 {
			m.enqueueLocked(&OutboxEvent{JTI: fmt.Sprintf("j%d", i), Service: "https://a.example", Subject: fmt.Sprintf("s%d", i),
				Keep: true, CreatedAt: now}, now)
		}
		b.StartTimer()
		m.pruneEventsLocked(now.Add(OutboxRetention + time.Second))
		m.mu.Unlock()
	}
}
