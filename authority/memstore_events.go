package authority

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// memoryOutbox is the EventStore part of a MemoryStore, guarded by its
// mutex.
type memoryOutbox struct {
	receivers map[string]pass.ServiceEvents
	queue     map[string][]*memoryEvent // by Service, in Seq order
	byJTI     map[string]*memoryEvent
	seq       int64
	// changed is closed and replaced whenever an event is enqueued.
	changed chan struct{}
}

type memoryEvent struct {
	OutboxEvent
	owner string
	until time.Time // lease
}

var _ EventStore = (*MemoryStore)(nil)

// SetEventReceiver implements EventStore.
func (m *MemoryStore) SetEventReceiver(ctx context.Context, service string, r *pass.ServiceEvents) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := &m.events
	if r == nil {
		delete(o.receivers, service)
		return nil
	}
	if o.receivers == nil {
		o.receivers = map[string]pass.ServiceEvents{}
	}
	if _, ok := o.receivers[service]; !ok && len(o.receivers) >= m.limit {
		return ErrStoreFull
	}
	c := *r
	c.EventsAccepted = slices.Clone(r.EventsAccepted)
	o.receivers[service] = c
	return nil
}

// eventLocked asks c.Events for the event of one changed mission whose
// authorization (after the change) is a.
func (m *MemoryStore) eventLocked(c MissionChange, root, r, prior *Request, ancestors []*Request, a *Authorization) (*OutboxEvent, error) {
	if c.Events == nil || r.Version == prior.Version {
		return nil, nil
	}
	rcv, ok := m.events.receivers[a.Service]
	if !ok {
		return nil, nil
	}
	var chain []*Request
	for _, p := range ancestors {
		chain = append(chain, p.Clone())
	}
	return c.Events(MissionEvent{Change: c, Root: root.Clone(), Mission: r.Clone(), Prior: prior.State, Authorization: a.Clone(), Receiver: rcv,
		Ancestors: chain})
}

// enqueueLocked appends ev and reports whether it did. ev supersedes the
// pending events of its subject that a newer one may replace: all of them
// when it is terminal, otherwise those that are not Keep (the receiver
// narrows to the newest and confirms a version gap by a check). At the
// per-Service bound a non-Keep ev is refused rather than dropping another
// subject's event, which nothing has superseded.
func (m *MemoryStore) enqueueLocked(ev *OutboxEvent, now time.Time) bool {
	o := &m.events
	if o.queue == nil {
		o.queue = map[string][]*memoryEvent{}
		o.byJTI = map[string]*memoryEvent{}
	}
	q := slices.DeleteFunc(o.queue[ev.Service], func(e *memoryEvent) bool {
		drop := e.Subject == ev.Subject && e.owner == "" && (ev.Terminal || !e.Keep)
		if drop {
			delete(o.byJTI, e.JTI)
		}
		return drop
	})
	o.queue[ev.Service] = q
	if len(q) >= MaxOutboxPerService && !ev.Keep {
		return false
	}
	o.seq++
	e := &memoryEvent{OutboxEvent: *ev}
	e.Seq = o.seq
	q = append(q, e)
	o.queue[ev.Service] = q
	o.byJTI[e.JTI] = e
	if o.changed != nil {
		close(o.changed)
		o.changed = nil
	}
	return true
}

// ClaimEvents implements EventStore.
func (m *MemoryStore) ClaimEvents(ctx context.Context, owner string, now, leaseUntil time.Time, limit, perService int) ([]*OutboxEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*OutboxEvent
	for _, q := range m.events.queue {
		busy := map[string]bool{}
		leased := 0
		for _, e := range q {
			if e.owner != "" && now.Before(e.until) {
				busy[e.Subject] = true
				leased++
			}
		}
		for _, e := range q {
			if len(out) >= limit || leased >= perService {
				break
			}
			if !e.Push || busy[e.Subject] {
				continue
			}
			// Oldest of its subject: later ones wait behind it.
			busy[e.Subject] = true
			if now.Before(e.NextAt) {
				continue
			}
			e.owner, e.until = owner, leaseUntil
			leased++
			c := e.OutboxEvent
			out = append(out, &c)
		}
	}
	return out, nil
}

// FinishEvent implements EventStore.
func (m *MemoryStore) FinishEvent(ctx context.Context, owner, jti string, next time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.events.byJTI[jti]
	if !ok || e.owner != owner {
		return ErrNotFound
	}
	if next.IsZero() {
		m.deleteEventLocked(e)
		return nil
	}
	e.owner, e.until, e.NextAt = "", time.Time{}, next
	e.Attempts++
	return nil
}

// deleteEventLocked removes e from its queue, which is in Seq order, so it
// is found by binary search rather than by a call per event queued.
func (m *MemoryStore) deleteEventLocked(e *memoryEvent) {
	o := &m.events
	delete(o.byJTI, e.JTI)
	q := o.queue[e.Service]
	if i, ok := slices.BinarySearchFunc(q, e.Seq, func(x *memoryEvent, seq int64) int { return cmp.Compare(x.Seq, seq) }); ok && q[i] == e {
		q = slices.Delete(q, i, i+1)
	} else {
		q = slices.DeleteFunc(q, func(x *memoryEvent) bool { return x == e }) // never out of order, but never kept either
	}
	m.setQueueLocked(e.Service, q)
}

// dropEventsLocked removes from service's queue, in one pass, the events
// drop reports: acknowledging or expiring many events one by one would
// move the rest of the queue for each.
func (m *MemoryStore) dropEventsLocked(service string, drop func(*memoryEvent) bool) {
	o := &m.events
	q := slices.DeleteFunc(o.queue[service], func(e *memoryEvent) bool {
		if drop(e) {
			delete(o.byJTI, e.JTI)
			return true
		}
		return false
	})
	m.setQueueLocked(service, q)
}

func (m *MemoryStore) setQueueLocked(service string, q []*memoryEvent) {
	if len(q) == 0 {
		delete(m.events.queue, service)
	} else {
		m.events.queue[service] = q
	}
}

// PollEvents implements EventStore.
func (m *MemoryStore) PollEvents(ctx context.Context, service string, max int, now time.Time) ([]*OutboxEvent, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cutoff := now.Add(-OutboxRetention)
	m.dropEventsLocked(service, func(e *memoryEvent) bool { return !e.Push && e.CreatedAt.Before(cutoff) })
	var out []*OutboxEvent
	more := false
	for _, e := range m.events.queue[service] {
		if e.Push {
			continue
		}
		if len(out) >= max {
			more = true
			break
		}
		c := e.OutboxEvent
		out = append(out, &c)
	}
	return out, more, nil
}

// AckEvents implements EventStore.
func (m *MemoryStore) AckEvents(ctx context.Context, service string, jtis []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var acked map[*memoryEvent]bool
	for _, j := range jtis {
		if e, ok := m.events.byJTI[j]; ok && e.Service == service {
			if acked == nil {
				acked = make(map[*memoryEvent]bool)
			}
			acked[e] = true
		}
	}
	if len(acked) > 0 {
		m.dropEventsLocked(service, func(e *memoryEvent) bool { return acked[e] })
	}
	return nil
}

// WaitEvents implements EventStore.
func (m *MemoryStore) WaitEvents(ctx context.Context, after int64) (int64, error) {
	for {
		m.mu.Lock()
		if m.events.seq > after {
			g := m.events.seq
			m.mu.Unlock()
			return g, nil
		}
		if m.events.changed == nil {
			m.events.changed = make(chan struct{})
		}
		ch := m.events.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return after, ctx.Err()
		}
	}
}

// pruneEventsLocked drops the SETs older than OutboxRetention, pushed or
// not (a push is given up long before).
func (m *MemoryStore) pruneEventsLocked(now time.Time) {
	cutoff := now.Add(-OutboxRetention)
	for service := range m.events.queue {
		m.dropEventsLocked(service, func(e *memoryEvent) bool { return e.CreatedAt.Before(cutoff) })
	}
}
