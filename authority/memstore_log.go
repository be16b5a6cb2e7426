package authority

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"
)

// maxLogConsumers bounds the consumer names a MemoryStore keeps.
const maxLogConsumers = 1000

// memoryLog is the LogStore part of a MemoryStore, guarded by its mutex:
// references into the histories in append order (records of pruned
// missions are skipped and compacted away), and consumer positions.
type memoryLog struct {
	refs      []logRef
	seq       int64
	consumers map[string]*memoryConsumer
	// changed is closed and replaced whenever a record is appended.
	changed chan struct{}
}

type logRef struct {
	pos     int64
	mission string
	seq     int64
}

type memoryConsumer struct {
	pos   string
	owner string
	until time.Time
}

var _ LogStore = (*MemoryStore)(nil)

// appendLogLocked records that recs were appended to mission's history.
func (m *MemoryStore) appendLogLocked(mission string, recs ...HistoryRecord) {
	for _, r := range recs {
		m.log.seq++
		m.log.refs = append(m.log.refs, logRef{pos: m.log.seq, mission: mission, seq: r.Seq})
	}
	if m.log.changed != nil {
		close(m.log.changed)
		m.log.changed = nil
	}
}

// compactLogLocked drops the references to pruned missions.
func (m *MemoryStore) compactLogLocked() {
	m.log.refs = slices.DeleteFunc(m.log.refs, func(r logRef) bool {
		_, ok := m.history[r.mission]
		return !ok
	})
}

func (m *MemoryStore) logChanged() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.log.changed == nil {
		m.log.changed = make(chan struct{})
	}
	return m.log.changed
}

// ReadLog implements LogStore. Positions are decimal append counters.
func (m *MemoryStore) ReadLog(ctx context.Context, after string, limit int) ([]LogRecord, error) {
	var from int64
	if after != "" {
		n, err := strconv.ParseInt(after, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("authority: ReadLog: bad position")
		}
		from = n
	}
	limit = ListOptions{Limit: limit}.EffectiveLimit()
	m.mu.Lock()
	defer m.mu.Unlock()
	refs := m.log.refs
	i := sort.Search(len(refs), func(i int) bool { return refs[i].pos > from })
	var out []LogRecord
	for ; i < len(refs) && len(out) < limit; i++ {
		ref := refs[i]
		h := m.history[ref.mission]
		if ref.seq < 1 || int(ref.seq) > len(h) || h[ref.seq-1].Seq != ref.seq {
			continue
		}
		rec := h[ref.seq-1]
		out = append(out, LogRecord{MissionID: ref.mission, Position: strconv.FormatInt(ref.pos, 10),
			HistoryRecord: HistoryRecord{Seq: rec.Seq, Body: slices.Clone(rec.Body), Hash: rec.Hash}})
	}
	return out, nil
}

// ClaimConsumer implements LogStore.
func (m *MemoryStore) ClaimConsumer(ctx context.Context, name, owner string, now, leaseUntil time.Time) (string, bool, error) {
	if name == "" || owner == "" {
		return "", false, fmt.Errorf("authority: ClaimConsumer: empty name or owner")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.log.consumers == nil {
		m.log.consumers = map[string]*memoryConsumer{}
	}
	c, ok := m.log.consumers[name]
	if !ok {
		if len(m.log.consumers) >= maxLogConsumers {
			return "", false, ErrStoreFull
		}
		c = &memoryConsumer{}
		m.log.consumers[name] = c
	}
	if c.owner != "" && c.owner != owner && now.Before(c.until) {
		return "", false, nil
	}
	c.owner, c.until = owner, leaseUntil
	return c.pos, true, nil
}

// SaveConsumer implements LogStore.
func (m *MemoryStore) SaveConsumer(ctx context.Context, name, owner, position string, leaseUntil time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.log.consumers[name]
	if !ok || c.owner != owner {
		return ErrState
	}
	c.pos, c.until = position, leaseUntil
	return nil
}
