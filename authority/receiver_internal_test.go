package authority

import (
	"context"
	"log/slog"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// countingEvents counts the receivers recorded; the rest of EventStore is
// not called here.
type countingEvents struct {
	EventStore
	set  int
	last *pass.ServiceEvents
}

func (c *countingEvents) SetEventReceiver(_ context.Context, _ string, r *pass.ServiceEvents) error {
	c.set++
	c.last = r
	return nil
}

// TestNoteReceiverOnce: the receiver a validation learns is recorded once
// per Service and change, and a repeat (every validation of a Service
// without events) costs no allocation.
func TestNoteReceiverOnce(t *testing.T) {
	const origin = "https://svc.example.com"
	st := &countingEvents{}
	a := &Authority{log: slog.New(slog.DiscardHandler), tx: &transmitter{store: st, known: map[string]knownReceiver{}}}
	plain := &pass.ServiceConfiguration{}
	a.noteReceiver(t.Context(), origin, plain)
	if n := testing.AllocsPerRun(100, func() { a.noteReceiver(t.Context(), origin, plain) }); n != 0 {
		t.Errorf("repeated noteReceiver: %v allocations, want 0", n)
	}
	if st.set != 1 || st.last != nil {
		t.Fatalf("no events: %d records (%v), want 1 of nil", st.set, st.last)
	}
	ext, err := pass.ServiceEvents{DeliveryMethod: pass.DeliveryPoll, EventsAccepted: []string{"a", "b"}}.Extension(origin)
	if err != nil {
		t.Fatal(err)
	}
	x, err := pass.Extensions{}.With(pass.ExtEvents, ext)
	if err != nil {
		t.Fatal(err)
	}
	events := &pass.ServiceConfiguration{Extensions: x}
	a.noteReceiver(t.Context(), origin, events)
	a.noteReceiver(t.Context(), origin, events)
	if st.set != 2 || st.last == nil || st.last.DeliveryMethod != pass.DeliveryPoll {
		t.Fatalf("events: %d records (%+v), want 2, the last poll", st.set, st.last)
	}
	ext, _ = pass.ServiceEvents{DeliveryMethod: pass.DeliveryPoll, EventsAccepted: []string{"a"}}.Extension(origin)
	x, _ = pass.Extensions{}.With(pass.ExtEvents, ext)
	a.noteReceiver(t.Context(), origin, &pass.ServiceConfiguration{Extensions: x})
	if st.set != 3 || len(st.last.EventsAccepted) != 1 {
		t.Fatalf("changed events: %d records (%+v), want 3 with one type", st.set, st.last)
	}
	a.noteReceiver(t.Context(), origin, plain)
	if st.set != 4 || st.last != nil {
		t.Fatalf("events withdrawn: %d records (%+v), want 4 of nil", st.set, st.last)
	}
}
