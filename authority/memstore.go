package authority

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// Defaults of a MemoryStore.
const (
	defaultMemoryStoreLimit     = 100_000
	defaultMemoryStoreRetention = time.Hour
)

// MemoryStore is the in-memory Store, the default of Config.Store. It
// serialises every operation with one mutex, so each is atomic. Records
// that can no longer change are pruned a retention period after they end
// (WithRetention); the number of records is bounded (WithLimit). It
// is safe for concurrent use; its state is lost when the process exits, so
// several replicas need a shared Store instead.
type MemoryStore struct {
	limit     int
	retention time.Duration

	mu       sync.Mutex
	requests map[string]*Request // by mission id
	byHash   map[string]string   // request id hash -> mission id
	passes   map[string]string   // pass hash -> mission id
	authz    map[string]*Authorization
	children map[string][]string // parent mission id -> child mission ids
	// staleChildren names the lists of children that may hold deleted
	// missions (see compactChildrenLocked).
	staleChildren map[string]struct{}
	history       map[string][]HistoryRecord
	lastPrune     time.Time
	events        memoryOutbox
	log           memoryLog
	keep          Retention

	// No record ends before endsFirst when endsKnown: a full store looks
	// for dead records only once one can have ended, so a store full of
	// live ones refuses without a scan per request.
	endsFirst time.Time
	endsKnown bool
	// lastEvict is when a full store last scanned for ended records: at
	// the bound, records ending a moment apart would otherwise make every
	// write scan them all under the lock (an issuance flood supplying the
	// writes), so a full store scans at most once per evictEvery.
	lastEvict time.Time
}

// MemoryOption configures a MemoryStore.
type MemoryOption func(*MemoryStore)

// WithLimit bounds the requests plus authorizations the store holds to n
// (n <= 0 keeps the default, 100,000). At the bound, records that can no
// longer change are dropped at once, whatever their retention; only when
// every record is live does CreateRequest fail with ErrStoreFull. A full
// store looks for such records at most once a second, so that records
// ending a moment apart cannot make every write scan the whole store.
func WithLimit(n int) MemoryOption {
	return func(m *MemoryStore) {
		if n > 0 {
			m.limit = n
		}
	}
}

// WithRetention sets how long the store keeps a record after it can no
// longer change (expired, decided and dead, closed), so that late polls and
// checks get a precise answer rather than "unknown" (d <= 0 keeps the
// default, one hour).
func WithRetention(d time.Duration) MemoryOption {
	return func(m *MemoryStore) {
		if d > 0 {
			m.retention = d
		}
	}
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	m := &MemoryStore{
		limit:         defaultMemoryStoreLimit,
		retention:     defaultMemoryStoreRetention,
		requests:      map[string]*Request{},
		byHash:        map[string]string{},
		passes:        map[string]string{},
		authz:         map[string]*Authorization{},
		children:      map[string][]string{},
		staleChildren: map[string]struct{}{},
		history:       map[string][]HistoryRecord{},
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

var _ Store = (*MemoryStore)(nil)

// CreateRequest implements Store.
func (m *MemoryStore) CreateRequest(ctx context.Context, r *Request) error {
	if r == nil {
		return fmt.Errorf("authority: CreateRequest: nil request")
	}
	c := r.Clone()
	recs, err := c.StartMission()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.insertLocked(r, c, recs)
}

// CreateChild implements Store: the parent's state, its live children and
// the insertion are judged and done under the store's one lock.
func (m *MemoryStore) CreateChild(ctx context.Context, r *Request, now time.Time) error {
	if r == nil || r.ParentMissionID == "" {
		return fmt.Errorf("authority: CreateChild: no parent")
	}
	c := r.Clone()
	recs, err := c.StartMission()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	parent, ok := m.requests[c.ParentMissionID]
	if !ok {
		return ErrNotFound
	}
	var ancestors []*Request
	for p, depth := parent.ParentMissionID, 0; p != ""; depth++ {
		a, ok := m.requests[p]
		if !ok || depth >= maxMissionDepth {
			return ErrState // a pruned or cyclic chain cannot be confirmed active
		}
		ancestors = append(ancestors, a)
		p = a.ParentMissionID
	}
	live := 0
	for _, id := range m.children[parent.MissionID] {
		if k, ok := m.requests[id]; ok && k.liveChild() {
			live++
		}
	}
	if err := c.CheckParent(parent, ancestors, live, now); err != nil {
		return err
	}
	return m.insertLocked(r, c, recs)
}

// insertLocked stores c (the started copy of r) with its history records
// and copies the stored state back into r.
func (m *MemoryStore) insertLocked(r, c *Request, recs []HistoryRecord) error {
	m.pruneLocked(r.CreatedAt)
	if _, ok := m.requests[c.MissionID]; ok {
		return ErrConflict
	}
	if _, ok := m.byHash[c.IDHash]; ok {
		return ErrConflict
	}
	if r.PassHash != "" {
		if _, ok := m.passes[r.PassHash]; ok {
			return ErrConflict
		}
	}
	if len(m.requests)+len(m.authz) >= m.limit {
		m.evictDeadLocked(r.CreatedAt)
		if len(m.requests)+len(m.authz) >= m.limit {
			return ErrStoreFull
		}
	}
	m.requests[c.MissionID] = c
	m.byHash[c.IDHash] = c.MissionID
	m.history[c.MissionID] = recs
	m.appendLogLocked(c.MissionID, recs...)
	if c.PassHash != "" {
		m.passes[c.PassHash] = c.MissionID
	}
	if c.ParentMissionID != "" {
		m.children[c.ParentMissionID] = append(m.children[c.ParentMissionID], c.MissionID)
	}
	m.noteEnd(c.EndsAt())
	*r = *c.Clone()
	return nil
}

// RequestByIDHash implements Store.
func (m *MemoryStore) RequestByIDHash(ctx context.Context, idHash string) (*Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.requests[m.byHash[idHash]]
	if !ok {
		return nil, ErrNotFound
	}
	return r.Clone(), nil
}

// Missions implements Store.
func (m *MemoryStore) Missions(ctx context.Context, opts MissionListOptions) ([]*Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Request
	keep := func(r *Request) {
		if opts.matches(r) && (opts.After == nil || compareCursor(r, *opts.After) > 0) {
			out = append(out, r)
		}
	}
	if opts.Parent != "" {
		// A mission's children are indexed: every view of a mission
		// lists them, and a scan of the whole store under the lock per
		// view would let anyone holding a pending mission stall it.
		for _, id := range m.children[opts.Parent] {
			if r, ok := m.requests[id]; ok {
				keep(r)
			}
		}
	} else {
		for _, r := range m.requests {
			keep(r)
		}
	}
	slices.SortFunc(out, func(a, b *Request) int { return compareCursor(a, MissionCursor{b.CreatedAt, b.MissionID}) })
	if len(out) > opts.EffectiveLimit() {
		out = out[:opts.EffectiveLimit()]
	}
	for i, r := range out {
		out[i] = r.Clone()
	}
	return out, nil
}

func compareCursor(r *Request, c MissionCursor) int {
	if x := r.CreatedAt.Compare(c.CreatedAt); x != 0 {
		return x
	}
	return strings.Compare(r.MissionID, c.MissionID)
}

// History implements Store.
func (m *MemoryStore) History(ctx context.Context, missionID string) ([]HistoryRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.history[missionID]
	if !ok {
		return nil, ErrNotFound
	}
	out := make([]HistoryRecord, len(h))
	for i, rec := range h {
		out[i] = HistoryRecord{Seq: rec.Seq, Body: slices.Clone(rec.Body), Hash: rec.Hash}
	}
	return out, nil
}

// TransitionMission implements Store: the change, its history record, the
// authorization's state and the cascade to descendants happen under the
// store's one lock, on copies that replace the stored records only when
// every step succeeded.
func (m *MemoryStore) TransitionMission(ctx context.Context, missionID string, c MissionChange, now time.Time) (*Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.requests[missionID]
	if !ok {
		return nil, ErrNotFound
	}
	root := cur.Clone()
	rec, err := c.Apply(root, now)
	if err != nil {
		return nil, err
	}
	type staged struct {
		r          *Request
		rec        HistoryRecord
		by, reason string
		prior      *Request
		ancestors  []*Request
	}
	changes := []staged{{root, rec, c.By, c.Reason, cur, nil}}
	seen := map[string]bool{missionID: true}
	queue := slices.Clone(m.children[missionID])
	for depth := 0; len(queue) > 0 && depth < maxMissionDepth; depth++ {
		var next []string
		for _, id := range queue {
			d, ok := m.requests[id]
			if !ok || seen[id] {
				continue
			}
			seen[id] = true
			dc := d.Clone()
			// Nothing is stored until every step succeeded: the map holds
			// each ancestor as it was before the change. Only a change of
			// scope or stage reads them.
			var ancestors []*Request
			if c.Scope != nil || c.Stage != nil {
				ancestors = m.ancestorsLocked(d)
			}
			drec, changed, err := c.Cascade(root, dc, ancestors, now)
			if err != nil {
				return nil, err
			}
			if changed {
				changes = append(changes, staged{dc, drec, c.By, "an ancestor mission changed", d, ancestors})
			}
			next = append(next, m.children[id]...)
		}
		queue = next
	}
	synced := make([]*Authorization, len(changes))
	var events []*OutboxEvent
	for i, ch := range changes {
		a, ok := m.authz[ch.r.AuthorizationID]
		if !ok {
			continue
		}
		ac := a.Clone()
		if ch.r.SyncAuthorization(ac, ch.by, ch.reason, now) {
			synced[i] = ac
		}
		ev, err := m.eventLocked(c, root, ch.r, ch.prior, ch.ancestors, ac)
		if err != nil {
			return nil, err
		}
		if ev != nil {
			events = append(events, ev)
		}
	}
	for i, ch := range changes {
		m.requests[ch.r.MissionID] = ch.r
		m.history[ch.r.MissionID] = append(m.history[ch.r.MissionID], ch.rec)
		m.appendLogLocked(ch.r.MissionID, ch.rec)
		m.noteEnd(ch.r.EndsAt())
		if ac := synced[i]; ac != nil {
			m.authz[ac.ID] = ac
			m.noteEnd(authzEnd(ac))
		}
	}
	for _, ev := range events {
		if !m.enqueueLocked(ev, now) && c.EventRefused != nil {
			c.EventRefused(ev)
		}
	}
	return root.Clone(), nil
}

// ancestorsLocked returns r's stored ancestors, parent first, as far as
// they are held (at most maxMissionDepth).
func (m *MemoryStore) ancestorsLocked(r *Request) []*Request {
	var out []*Request
	for p := r.ParentMissionID; p != "" && len(out) < maxMissionDepth; {
		a, ok := m.requests[p]
		if !ok {
			break
		}
		out = append(out, a)
		p = a.ParentMissionID
	}
	return out
}

// blockedLocked reports whether r's mission may not be used at now: not
// active itself, or an ancestor suspended or ended.
func (m *MemoryStore) blockedLocked(r *Request, now time.Time) bool {
	var ancestors []*Request
	for p, depth := r.ParentMissionID, 0; p != "" && depth < maxMissionDepth; depth++ {
		a, ok := m.requests[p]
		if !ok {
			return true
		}
		ancestors = append(ancestors, a)
		p = a.ParentMissionID
	}
	return EffectiveMissionState(r, ancestors, now) != pass.MissionActive
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
	// The oldest page is kept in a max-heap as the requests are scanned,
	// and only it is copied: an issuance flood can leave tens of
	// thousands pending, and the pending gauge lists them on every
	// collection, under the store's lock.
	older := func(a, b *Request) int { return compareCursor(a, MissionCursor{b.CreatedAt, b.MissionID}) }
	limit := opts.EffectiveLimit()
	page := &oldestPage{cmp: older}
	for _, r := range m.requests {
		if r.StatusAt(opts.Now) != pass.StatusPending || !matches(opts, r.User, r.Service) {
			continue
		}
		if page.Len() < limit {
			heap.Push(page, r)
		} else if older(r, page.rs[0]) < 0 {
			page.rs[0] = r
			heap.Fix(page, 0)
		}
	}
	out := page.rs
	slices.SortFunc(out, older)
	for i, r := range out {
		out[i] = r.Clone()
	}
	return out, nil
}

// oldestPage is a max-heap of requests by cmp: its top is the newest of
// the oldest kept so far.
type oldestPage struct {
	rs  []*Request
	cmp func(a, b *Request) int
}

func (p *oldestPage) Len() int           { return len(p.rs) }
func (p *oldestPage) Less(i, j int) bool { return p.cmp(p.rs[i], p.rs[j]) > 0 }
func (p *oldestPage) Swap(i, j int)      { p.rs[i], p.rs[j] = p.rs[j], p.rs[i] }
func (p *oldestPage) Push(x any)         { p.rs = append(p.rs, x.(*Request)) }
func (p *oldestPage) Pop() any {
	r := p.rs[len(p.rs)-1]
	p.rs = p.rs[:len(p.rs)-1]
	return r
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
func (m *MemoryStore) ConsumePass(ctx context.Context, passHash, audience, authorizationID string, now time.Time) (*Consumption, error) {
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
			return m.consumptionLocked(a, r), nil // a retry of this consumption
		}
		return nil, ErrConsumed
	}
	if !now.Before(r.Decision.PassExpiresAt) {
		return nil, ErrExpired
	}
	if m.blockedLocked(r, now) {
		return nil, ErrNotFound
	}
	if _, taken := m.authz[authorizationID]; taken {
		return nil, ErrConflict
	}
	// A shallow copy: the consumption changes only top-level fields, and
	// the stored record it replaces is dropped, so the two never share
	// nested data while both are live (writers replace stored records,
	// never change their nested data in place).
	cp := *r
	c := &cp
	c.ConsumedAt = now
	c.AuthorizationID = authorizationID
	rec, err := c.Record(pass.HistoryEntry{Type: "redeemed", By: "service:" + audience,
		Details: map[string]any{"authorization_id": authorizationID}}, now)
	if err != nil {
		return nil, err
	}
	// The stored authorization shares c's scopes and key: both are
	// stored records, replaced and never changed in place.
	a := c.authorize(authorizationID, now, true)
	m.requests[id] = c
	m.history[id] = append(m.history[id], rec)
	m.appendLogLocked(id, rec)
	m.authz[a.ID] = a
	m.noteEnd(c.EndsAt())
	m.noteEnd(authzEnd(a))
	return m.consumptionLocked(a, c), nil
}

// consumptionLocked returns copies of a, its mission r and r's ancestors.
// The answer and its two copies are one allocation: it runs on every
// validation.
func (m *MemoryStore) consumptionLocked(a *Authorization, r *Request) *Consumption {
	parts := new(struct {
		c   Consumption
		az  Authorization
		r   Request
		dec Evidence
	})
	p := scopePack(make([]string, 0, a.scopeLen()+r.scopeLen()))
	b := rawPack(make([]byte, 0, len(a.Cnf)+len(r.Cnf)))
	a.cloneInto(&parts.az, &p, &b)
	r.cloneInto(&parts.r, &p, &b, &parts.dec)
	out := &parts.c
	*out = Consumption{Authorization: &parts.az, Mission: &parts.r}
	for p, depth := r.ParentMissionID, 0; p != "" && depth < maxMissionDepth; depth++ {
		pr, ok := m.requests[p]
		if !ok {
			break
		}
		out.Ancestors = append(out.Ancestors, pr.Clone())
		p = pr.ParentMissionID
	}
	return out
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

func matches(o ListOptions, user, service string) bool {
	return (o.User == "" || strings.EqualFold(o.User, user)) && (o.Service == "" || o.Service == service)
}

// pruneLocked drops records that can no longer change and ended more than
// the retention before now. It runs at most once a minute.
func (m *MemoryStore) pruneLocked(now time.Time) {
	if now.IsZero() || now.Sub(m.lastPrune) < time.Minute {
		return
	}
	m.lastPrune = now
	keep := m.keep.Fill(m.retention)
	for id, r := range m.requests {
		if expired(r.EndsAt(), keep.forRequest(r), now) {
			m.deleteRequestLocked(id, r)
		}
	}
	for id, a := range m.authz {
		if expired(authzEnd(a), keep.Authorizations, now) {
			delete(m.authz, id)
		}
	}
	m.compactLogLocked()
	m.compactChildrenLocked()
	m.pruneEventsLocked(now)
}

// evictEvery is the least time between two scans of a full store for
// ended records.
const evictEvery = time.Second

// evictDeadLocked drops every record that can no longer change by now,
// retention or not, and learns when the next live one ends.
func (m *MemoryStore) evictDeadLocked(now time.Time) {
	if now.IsZero() || m.endsKnown && now.Before(m.endsFirst) {
		return
	}
	if !m.lastEvict.IsZero() && now.Sub(m.lastEvict) < evictEvery && now.After(m.lastEvict) {
		return
	}
	m.lastEvict = now
	var first time.Time
	forever := m.keep.Fill(m.retention)
	keep := func(end time.Time, d time.Duration) bool {
		if d >= Forever {
			// Kept by policy, whatever the bound; look again in a minute
			// rather than at every request.
			end = now.Add(time.Minute)
		}
		if !end.After(now) {
			return false
		}
		if first.IsZero() || end.Before(first) {
			first = end
		}
		return true
	}
	for id, r := range m.requests {
		if !keep(r.EndsAt(), forever.forRequest(r)) {
			m.deleteRequestLocked(id, r)
		}
	}
	for id, a := range m.authz {
		if !keep(authzEnd(a), forever.Authorizations) {
			delete(m.authz, id)
		}
	}
	m.compactLogLocked()
	m.compactChildrenLocked()
	m.endsFirst, m.endsKnown = first, !first.IsZero()
}

// compactChildrenLocked drops deleted missions from the children lists
// deleteRequestLocked marked, and lists left empty, so that a parent's
// list never outgrows the children still held (a parent spawning for
// months).
func (m *MemoryStore) compactChildrenLocked() {
	for p := range m.staleChildren {
		kids := slices.DeleteFunc(m.children[p], func(k string) bool {
			_, held := m.requests[k]
			return !held
		})
		if len(kids) > 0 {
			m.children[p] = kids
		} else {
			delete(m.children, p)
		}
		delete(m.staleChildren, p)
	}
}

// deleteRequestLocked removes a mission's request and everything keyed by it.
func (m *MemoryStore) deleteRequestLocked(id string, r *Request) {
	delete(m.requests, id)
	delete(m.byHash, r.IDHash)
	delete(m.history, id)
	// The parent's list of children, and this mission's own (its
	// children may outlive it), drop deleted ids in compactChildrenLocked,
	// once per sweep: filtered here, a sweep deleting many children of
	// one parent would walk its list once per child.
	if _, ok := m.children[id]; ok {
		m.staleChildren[id] = struct{}{}
	}
	if p := r.ParentMissionID; p != "" {
		m.staleChildren[p] = struct{}{}
	}
	if r.PassHash != "" {
		delete(m.passes, r.PassHash)
	}
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
