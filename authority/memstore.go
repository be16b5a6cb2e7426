package authority

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// Bounds of a MemoryStore.
const (
	// MemoryStoreMaxRecords bounds the requests plus authorizations a
	// MemoryStore holds. At the bound, records that can no longer change
	// are dropped at once, whatever their retention; only when every
	// record is live does CreateRequest fail with ErrStoreFull.
	MemoryStoreMaxRecords = 100_000
	// MemoryStoreRetention is how long a MemoryStore keeps a record after
	// it can no longer change (expired, decided and dead, closed), so that
	// late polls and checks get a precise answer rather than "unknown".
	// A full store gives this up first: a flood of dead records must not
	// refuse a live request.
	MemoryStoreRetention = time.Hour
)

// MemoryStore is the in-memory Store, the default of Config.Store. It
// serialises every operation with one mutex, so each is atomic. Records
// that can no longer change are pruned MemoryStoreRetention after they
// end, or as soon as the store is full; the total number of records is
// bounded by MemoryStoreMaxRecords. The Authority's default rate limits
// keep a flood from filling it with live requests (see RateLimits). It
// is safe for concurrent use; its state is lost when the process exits, so
// several replicas need a shared Store instead.
type MemoryStore struct {
	mu        sync.Mutex
	requests  map[string]*Request
	passes    map[string]string // pass hash -> request id
	authz     map[string]*Authorization
	children  map[string][]string // parent authorization id -> children
	lastPrune time.Time

	// No record ends before endsFirst when endsKnown: a full store looks
	// for dead records only once one can have ended, so a store full of
	// live ones refuses without a scan per request.
	endsFirst time.Time
	endsKnown bool
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		requests: map[string]*Request{},
		passes:   map[string]string{},
		authz:    map[string]*Authorization{},
		children: map[string][]string{},
	}
}

var _ Store = (*MemoryStore)(nil)

// CreateRequest implements Store.
func (m *MemoryStore) CreateRequest(ctx context.Context, r *Request) error {
	if r == nil || r.ID == "" {
		return fmt.Errorf("authority: CreateRequest: empty request id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(r.CreatedAt)
	if _, ok := m.requests[r.ID]; ok {
		return ErrConflict
	}
	if r.PassHash != "" {
		if _, ok := m.passes[r.PassHash]; ok {
			return ErrConflict
		}
	}
	if len(m.requests)+len(m.authz) >= MemoryStoreMaxRecords {
		m.evictDeadLocked(r.CreatedAt)
		if len(m.requests)+len(m.authz) >= MemoryStoreMaxRecords {
			return ErrStoreFull
		}
	}
	c := r.Clone()
	m.requests[c.ID] = c
	if c.PassHash != "" {
		m.passes[c.PassHash] = c.ID
	}
	m.noteEnd(c.EndsAt())
	return nil
}

// Request implements Store.
func (m *MemoryStore) Request(ctx context.Context, id string) (*Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.requests[id]
	if !ok {
		return nil, ErrNotFound
	}
	return r.Clone(), nil
}

// PendingRequests implements Store.
func (m *MemoryStore) PendingRequests(ctx context.Context, opts ListOptions) ([]*Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Request
	for _, r := range m.requests {
		if r.StatusAt(opts.Now) != pass.StatusPending || !matches(opts, r.User, r.Service) {
			continue
		}
		out = append(out, r.Clone())
	}
	slices.SortFunc(out, func(a, b *Request) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(out) > opts.EffectiveLimit() {
		out = out[:opts.EffectiveLimit()]
	}
	return out, nil
}

// DecideRequest implements Store.
func (m *MemoryStore) DecideRequest(ctx context.Context, id string, d Evidence, now time.Time) (*Request, error) {
	if !d.Status.Terminal() || d.Status == pass.StatusExpired {
		return nil, fmt.Errorf("authority: DecideRequest: status %q is not a decision", d.Status)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.requests[id]
	if !ok {
		return nil, ErrNotFound
	}
	switch r.StatusAt(now) {
	case pass.StatusPending:
	case pass.StatusExpired:
		return nil, ErrExpired
	default:
		return nil, ErrNotPending
	}
	e := d.Clone()
	r.Status = d.Status
	r.Decision = &e
	m.noteEnd(r.EndsAt())
	return r.Clone(), nil
}

// RotatePass implements Store.
func (m *MemoryStore) RotatePass(ctx context.Context, id, passHash string, now time.Time) (*Request, error) {
	if passHash == "" {
		return nil, fmt.Errorf("authority: RotatePass: empty hash")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.requests[id]
	if !ok {
		return nil, ErrNotFound
	}
	if r.Status != pass.StatusApproved || r.Decision == nil {
		return nil, ErrNotPending
	}
	if !r.ConsumedAt.IsZero() {
		return nil, ErrConsumed
	}
	if !now.Before(r.Decision.PassExpiresAt) {
		return nil, ErrExpired
	}
	if _, taken := m.passes[passHash]; taken {
		return nil, ErrConflict
	}
	if r.PassHash != "" {
		delete(m.passes, r.PassHash)
	}
	r.PassHash = passHash
	m.passes[passHash] = id
	return r.Clone(), nil
}

// ConsumePass implements Store.
func (m *MemoryStore) ConsumePass(ctx context.Context, passHash, audience, authorizationID string, now time.Time) (*Authorization, error) {
	if authorizationID == "" {
		return nil, fmt.Errorf("authority: ConsumePass: empty authorization id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.passes[passHash]
	if !ok {
		return nil, ErrNotFound
	}
	r, ok := m.requests[id]
	if !ok || r.Status != pass.StatusApproved || r.Decision == nil {
		return nil, ErrNotFound
	}
	if r.Service != audience {
		return nil, ErrWrongAudience
	}
	if !r.ConsumedAt.IsZero() {
		if a, ok := m.authz[authorizationID]; ok && r.AuthorizationID == authorizationID {
			return a.Clone(), nil // a retry of this consumption
		}
		return nil, ErrConsumed
	}
	if !now.Before(r.Decision.PassExpiresAt) {
		return nil, ErrExpired
	}
	if _, taken := m.authz[authorizationID]; taken {
		return nil, ErrConflict
	}
	r.ConsumedAt = now
	r.AuthorizationID = authorizationID
	m.noteEnd(now)
	a := r.Authorize(authorizationID, now)
	m.authz[a.ID] = a
	m.noteEnd(authzEnd(a))
	if a.ParentID != "" {
		m.children[a.ParentID] = append(m.children[a.ParentID], a.ID)
	}
	return a.Clone(), nil
}

// Authorization implements Store.
func (m *MemoryStore) Authorization(ctx context.Context, id string) (*Authorization, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.authz[id]
	if !ok {
		return nil, ErrNotFound
	}
	return a.Clone(), nil
}

// Authorizations implements Store.
func (m *MemoryStore) Authorizations(ctx context.Context, opts ListOptions) ([]*Authorization, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Authorization
	for _, a := range m.authz {
		s := a.StateAt(opts.Now)
		if s != pass.DelegationActive && s != pass.DelegationSuspended || !matches(opts, a.User, a.Service) {
			continue
		}
		out = append(out, a.Clone())
	}
	slices.SortFunc(out, func(a, b *Authorization) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(out) > opts.EffectiveLimit() {
		out = out[:opts.EffectiveLimit()]
	}
	return out, nil
}

// UpdateAuthorization implements Store.
func (m *MemoryStore) UpdateAuthorization(ctx context.Context, id string, u AuthorizationUpdate, now time.Time) (*Authorization, error) {
	if len(u.From) == 0 {
		return nil, fmt.Errorf("authority: UpdateAuthorization: empty From")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.authz[id]
	if !ok {
		return nil, ErrNotFound
	}
	c := a.Clone()
	if err := u.Apply(c, now); err != nil {
		return nil, err
	}
	m.authz[id] = c
	m.noteEnd(authzEnd(c))
	if u.To == pass.DelegationRevoked {
		m.revokeDescendantsLocked(id, u, now, 0)
	}
	return c.Clone(), nil
}

// revokeDescendantsLocked revokes every live descendant of parent.
func (m *MemoryStore) revokeDescendantsLocked(parent string, u AuthorizationUpdate, now time.Time, depth int) {
	if depth > 32 {
		return
	}
	for _, id := range m.children[parent] {
		a, ok := m.authz[id]
		if !ok {
			continue
		}
		if s := a.StateAt(now); s == pass.DelegationActive || s == pass.DelegationSuspended {
			a.State = pass.DelegationRevoked
			a.ClosedAt, a.UpdatedAt = now, now
			a.StateBy, a.StateReason = u.By, "parent authorization revoked"
			m.noteEnd(now)
		}
		m.revokeDescendantsLocked(id, u, now, depth+1)
	}
}

func matches(o ListOptions, user, service string) bool {
	return (o.User == "" || strings.EqualFold(o.User, user)) && (o.Service == "" || o.Service == service)
}

// pruneLocked drops records that can no longer change and ended more than
// MemoryStoreRetention before now. It runs at most once a minute.
func (m *MemoryStore) pruneLocked(now time.Time) {
	if now.IsZero() || now.Sub(m.lastPrune) < time.Minute {
		return
	}
	m.lastPrune = now
	cutoff := now.Add(-MemoryStoreRetention)
	for id, r := range m.requests {
		if r.EndsAt().Before(cutoff) {
			delete(m.requests, id)
			if r.PassHash != "" {
				delete(m.passes, r.PassHash)
			}
		}
	}
	for id, a := range m.authz {
		if authzEnd(a).Before(cutoff) {
			delete(m.authz, id)
			delete(m.children, id)
		}
	}
}

// evictDeadLocked drops every record that can no longer change by now,
// retention or not, and learns when the next live one ends.
func (m *MemoryStore) evictDeadLocked(now time.Time) {
	if now.IsZero() || m.endsKnown && now.Before(m.endsFirst) {
		return
	}
	var first time.Time
	keep := func(end time.Time) bool {
		if !end.After(now) {
			return false
		}
		if first.IsZero() || end.Before(first) {
			first = end
		}
		return true
	}
	for id, r := range m.requests {
		if !keep(r.EndsAt()) {
			delete(m.requests, id)
			if r.PassHash != "" {
				delete(m.passes, r.PassHash)
			}
		}
	}
	for id, a := range m.authz {
		if !keep(authzEnd(a)) {
			delete(m.authz, id)
			delete(m.children, id)
		}
	}
	m.endsFirst, m.endsKnown = first, !first.IsZero()
}

// noteEnd records that a record ends at end.
func (m *MemoryStore) noteEnd(end time.Time) {
	if m.endsKnown && end.Before(m.endsFirst) {
		m.endsFirst = end
	}
}

// authzEnd is when a stops changing: its closing, or its expiry.
func authzEnd(a *Authorization) time.Time {
	if !a.ClosedAt.IsZero() {
		return a.ClosedAt
	}
	return a.ExpiresAt
}

// Len returns the number of requests and authorizations held.
func (m *MemoryStore) Len() (requests, authorizations int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.requests), len(m.authz)
}
