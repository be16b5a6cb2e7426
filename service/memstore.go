package service

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// defaultMemoryStoreLimit is the default bound of a [MemoryStore]: the most
// unexpired credentials plus initialization tokens, and the most
// delegations, each.
const defaultMemoryStoreLimit = 100_000

// initRetention is how long a used or expired initialization token is
// remembered after its expiry, so that a late visit answers 410 (used or
// expired) rather than 404 (unknown).
const initRetention = 10 * time.Minute

// pruneEvery is how many writes pass between two sweeps of expired
// records (a sweep also runs whenever a table is full, at most once per
// forcedSweepEvery).
const (
	pruneEvery       = 1024
	forcedSweepEvery = time.Second
)

// MemoryStore is the in-memory [Store]: one process, bounded, with expired
// records pruned as writes happen. It is safe for concurrent use. State is
// lost when the process ends; replicas need a shared store.
type MemoryStore struct {
	limit int

	mu          sync.RWMutex
	delegations map[string]*memDelegation
	creds       map[string]*memCred // by credKey of the hash
	inits       map[string]*InitRecord
	closes      map[string]PendingClose
	writes      int
	// When sweepKnown, no record expires before expireFrom, nor can a
	// forced sweep drop one before forceFrom unless dirty (a delegation
	// invalidated or a token used since the last forced sweep): see
	// maybePrune. A pass over every record under the lock stalls every
	// reader, so a store full of live records refuses writes without
	// one, and a busy store sweeps only once something has expired.
	// sweeps counts the passes.
	expireFrom, forceFrom time.Time
	sweepKnown, dirty     bool
	sweeps                int
	// lastForced is when a full store last swept, by the writes' clock
	// and by this process's (lastForcedAt): records expiring a moment
	// apart would otherwise make every write at the bound sweep them all,
	// so a full store sweeps at most once per forcedSweepEvery; writes
	// whose times do not advance (out of order, or a frozen clock) are
	// held to the process's clock, so they can neither bypass the limit
	// nor stall the store.
	lastForced   time.Time
	lastForcedAt time.Time
	// No pending close expires before closesFrom when closesKnown: a full
	// closes table refuses without a scan until one can have.
	closesFrom  time.Time
	closesKnown bool
	// missions indexes the delegations by their own mission (true) and by
	// each of their ancestor missions (false), for InvalidateTree and
	// ApplyEvent.
	missions map[missionKey]map[string]bool

	// recent holds the credentials the middleware found lately, in a slot
	// chosen by their SHA-256, so that a request of a token in use finds
	// it without taking s.mu: on a busy Service every request would
	// otherwise write the lock's reader count, one cache line all cores
	// share. A credential leaves creds marked gone, so a slot never
	// serves one the store no longer holds.
	recent [recentSlots]atomic.Pointer[memCred]
}

// recentSlots is the size of MemoryStore.recent (a power of two).
const recentSlots = 4096

// missionKey names a mission: ids are chosen by Authorities, and an
// Authority's identifier is whatever its configuration states, so a
// mission is named by the Authority as this Service found it (identifier
// and configuration URL) and its id; another configuration claiming the
// same identifier can never reach it.
type missionKey struct{ authority, configURL, id string }

// memDelegation holds an immutable snapshot of a delegation: writers
// replace it (update) instead of changing it, so the middleware reads it
// without a copy, and without the store's lock, while a check updates it.
type memDelegation struct {
	rec  atomic.Pointer[DelegationRecord]
	refs int // credentials and init tokens that name it; under s.mu
	// usedInit is the hash of its initialization token once used, which
	// AddCredential drops to make room at the bound; under s.mu.
	usedInit string
}

func newMemDelegation(r *DelegationRecord) *memDelegation {
	d := &memDelegation{refs: 1}
	d.rec.Store(r)
	return d
}

// snap returns the current snapshot, which nobody changes.
func (d *memDelegation) snap() *DelegationRecord { return d.rec.Load() }

// update replaces d's snapshot by a shallow copy that change edits, and
// publishes it only once complete: a reader sees the old snapshot or the
// new one, never one half changed. Slices are replaced, never written in
// place. The caller holds the store's write lock.
func (d *memDelegation) update(change func(*DelegationRecord)) {
	r := *d.rec.Load()
	change(&r)
	d.rec.Store(&r)
}

// memCred holds a credential, which is never changed once stored, with
// its delegation's entry (so the middleware needs one map lookup, not
// two) and the Delegation the middleware last made of it (view), so that
// requests between two changes of the delegation share one instead of
// building their own.
type memCred struct {
	rec  *CredentialRecord
	del  *memDelegation
	view atomic.Pointer[delegationView]
	// key is the entry's key in MemoryStore.creds (credKey), which holds
	// the SHA-256 for a hash in secret.Hash's form (only those enter
	// MemoryStore.recent); gone is set when the store drops the
	// credential.
	key  string
	gone atomic.Bool
}

// heldUnder reports whether c's key is the SHA-256 sum, compared eight
// bytes at a time rather than through a call to the runtime's memequal.
func (c *memCred) heldUnder(sum *[32]byte) bool {
	k := c.key
	if len(k) != 33 {
		return false
	}
	return le64(k[1:]) == binary.LittleEndian.Uint64(sum[0:]) &&
		le64(k[9:]) == binary.LittleEndian.Uint64(sum[8:]) &&
		le64(k[17:]) == binary.LittleEndian.Uint64(sum[16:]) &&
		le64(k[25:]) == binary.LittleEndian.Uint64(sum[24:])
}

// le64 is binary.LittleEndian.Uint64 of a string's first eight bytes
// (the compiler makes it one load).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// credKey is the key of a credential hash in MemoryStore.creds: a hash
// in the form secret.Hash makes (64 lowercase hex digits) is kept as its
// 32 bytes behind a 1, so the middleware looks a token up by its SHA-256
// without encoding it; any other string is kept as it is behind a 0. Two
// hashes share a key only when they are equal.
func credKey(hash string) string {
	var buf [33]byte
	if k, ok := sumKey(&buf, hash); ok {
		return string(k)
	}
	return "\x00" + hash
}

// sumKey writes the credKey of a hash in secret.Hash's form into buf and
// returns it, or reports false for any other string.
func sumKey(buf *[33]byte, hash string) ([]byte, bool) {
	if len(hash) != 64 {
		return nil, false
	}
	buf[0] = 1
	for i := range 32 {
		hi, ok1 := lowerHex(hash[2*i])
		lo, ok2 := lowerHex(hash[2*i+1])
		if !ok1 || !ok2 {
			return nil, false
		}
		buf[1+i] = hi<<4 | lo
	}
	return buf[:], true
}

// lowerHex is the value of a lowercase hex digit.
func lowerHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// lookup returns the credential stored under hash. The caller holds s.mu.
func (s *MemoryStore) lookup(hash string) (*memCred, bool) {
	var buf [33]byte
	if k, ok := sumKey(&buf, hash); ok {
		c, ok := s.creds[string(k)]
		return c, ok
	}
	c, ok := s.creds["\x00"+hash]
	return c, ok
}

// putCred stores a copy of c for the delegation del, under the delegation
// id authorizationID. The entry and the copy are one allocation: a stored
// credential never changes. A stored scope equal to c's (the delegation's,
// usually) is shared rather than copied again: the store never writes a
// stored slice in place. The caller holds s.mu.
func (s *MemoryStore) putCred(c *CredentialRecord, authorizationID string, del *memDelegation, stored pass.Scope) {
	e := &struct {
		memCred
		rec CredentialRecord
	}{rec: *c}
	e.rec.Scope = shareScope(c.Scope, stored)
	e.rec.AuthorizationID = authorizationID
	e.memCred.rec, e.memCred.del, e.memCred.key = &e.rec, del, credKey(c.Hash)
	s.creds[e.key] = &e.memCred
	s.noteExpiry(c.ExpiresAt, c.ExpiresAt)
}

// storedCopy is d.clone() for the store's own snapshot: the current scope,
// equal to the granted one unless a mission is staged, shares its copy.
// Readers get clones of snapshots, so the sharing never leaves the store.
func storedCopy(d *DelegationRecord) *DelegationRecord {
	c := *d
	c.Scope = cloneScope(d.Scope)
	c.CurrentScope = shareScope(d.CurrentScope, c.Scope)
	c.Chain = slices.Clone(d.Chain)
	c.Ancestors = slices.Clone(d.Ancestors)
	return &c
}

// shareScope returns stored when it equals s (and both are nil or not),
// else a copy of s.
func shareScope(s, stored pass.Scope) pass.Scope {
	if (s == nil) == (stored == nil) && slices.Equal(s, stored) {
		return stored
	}
	return cloneScope(s)
}

// MemoryOption configures a MemoryStore.
type MemoryOption func(*MemoryStore)

// WithLimit bounds each table of the store to n records (n <= 0 keeps the
// default, 100,000). A full table makes writes fail with
// ErrStoreFull rather than drop live state; it looks for records it can
// drop at most once a second, so that records expiring a moment apart
// cannot make every write sweep the whole store.
func WithLimit(n int) MemoryOption {
	return func(s *MemoryStore) {
		if n > 0 {
			s.limit = n
		}
	}
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	s := &MemoryStore{
		limit:       defaultMemoryStoreLimit,
		delegations: make(map[string]*memDelegation),
		creds:       make(map[string]*memCred),
		inits:       make(map[string]*InitRecord),
		closes:      make(map[string]PendingClose),
		missions:    make(map[missionKey]map[string]bool),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

var _ Store = (*MemoryStore)(nil)

// Redeem implements Store.
func (s *MemoryStore) Redeem(ctx context.Context, d *DelegationRecord, cred *CredentialRecord, init *InitRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d == nil || d.AuthorizationID == "" || (cred == nil) == (init == nil) {
		return fmt.Errorf("service: MemoryStore.Redeem: need a delegation and exactly one of credential or init token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybePrune(d.CreatedAt, len(s.delegations) >= s.limit || len(s.creds)+len(s.inits) >= s.limit)
	if _, ok := s.delegations[d.AuthorizationID]; ok {
		if s.redeemedWith(d.AuthorizationID, cred, init) {
			return nil // a retry of this Redeem
		}
		return fmt.Errorf("service: delegation %w", ErrConflict)
	}
	if len(s.delegations) >= s.limit || len(s.creds)+len(s.inits) >= s.limit {
		return ErrStoreFull
	}
	if d.Invalidated || init != nil && init.Used {
		s.dirty = true // droppable from the start (a caller's own records)
	}
	snap := storedCopy(d)
	del := newMemDelegation(snap)
	if cred != nil {
		if _, ok := s.lookup(cred.Hash); ok {
			return fmt.Errorf("service: credential %w", ErrConflict)
		}
		s.putCred(cred, d.AuthorizationID, del, snap.Scope)
	} else {
		if _, ok := s.inits[init.Hash]; ok {
			return fmt.Errorf("service: initialization token %w", ErrConflict)
		}
		r := init.clone()
		r.AuthorizationID = d.AuthorizationID
		s.inits[r.Hash] = r
		s.noteExpiry(r.ExpiresAt.Add(initRetention), r.ExpiresAt)
	}
	s.delegations[d.AuthorizationID] = del
	for k, own := range indexKeys(d) {
		if s.missions[k] == nil {
			s.missions[k] = make(map[string]bool)
		}
		s.missions[k][d.AuthorizationID] = own
	}
	return nil
}

// redeemedWith reports whether the delegation id holds cred or init.
func (s *MemoryStore) redeemedWith(id string, cred *CredentialRecord, init *InitRecord) bool {
	if cred != nil {
		c, ok := s.lookup(cred.Hash)
		return ok && c.rec.AuthorizationID == id
	}
	r, ok := s.inits[init.Hash]
	return ok && r.AuthorizationID == id
}

// ConsumeInit implements Store.
func (s *MemoryStore) ConsumeInit(ctx context.Context, hash string, now time.Time) (*InitRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.inits[hash]
	if !ok {
		return nil, ErrNotFound
	}
	if r.Used {
		return nil, ErrInitUsed
	}
	r.Used = true
	s.dirty = true // a full store may now drop it
	if d, ok := s.delegations[r.AuthorizationID]; ok {
		d.usedInit = r.Hash
	}
	if !r.ExpiresAt.After(now) {
		return nil, ErrInitExpired
	}
	return r.clone(), nil
}

// AddCredential implements Store.
func (s *MemoryStore) AddCredential(ctx context.Context, c *CredentialRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.delegations[c.AuthorizationID]
	if !ok {
		return ErrNotFound
	}
	// The credential takes the place of the delegation's used
	// initialization token: at the bound it is dropped first, and the
	// delegation is held meanwhile, since a sweep could drop the token,
	// its only other reference, and with it the delegation (review 9:
	// every browser session at a full store burned its token).
	d.refs++
	defer s.release(c.AuthorizationID)
	if full := len(s.creds)+len(s.inits) >= s.limit; full && d.usedInit != "" {
		if r, ok := s.inits[d.usedInit]; ok && r.Used && r.AuthorizationID == c.AuthorizationID {
			delete(s.inits, d.usedInit)
			s.release(c.AuthorizationID)
		}
		d.usedInit = ""
	}
	s.maybePrune(c.CreatedAt, len(s.creds)+len(s.inits) >= s.limit)
	if d.snap().Invalidated {
		return fmt.Errorf("service: delegation invalidated: %w", ErrConflict)
	}
	if _, ok := s.lookup(c.Hash); ok {
		return fmt.Errorf("service: credential %w", ErrConflict)
	}
	if len(s.creds)+len(s.inits) >= s.limit {
		return ErrStoreFull
	}
	s.putCred(c, c.AuthorizationID, d, d.snap().Scope)
	d.refs++
	return nil
}

// Credential implements Store.
func (s *MemoryStore) Credential(ctx context.Context, hash string, now time.Time) (*CredentialRecord, *DelegationRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.lookup(hash)
	if !ok || !c.rec.ExpiresAt.After(now) {
		return nil, nil, ErrNotFound
	}
	return c.rec.clone(), c.del.snap().clone(), nil
}

// credentialSnapshot is Credential for the middleware: it takes the
// SHA-256 of the token and returns the stored entry and the delegation's
// current snapshot themselves, which are never changed in place, so the
// hot path neither encodes a key nor copies records. The caller must not
// modify them.
func (s *MemoryStore) credentialSnapshot(ctx context.Context, sum *[32]byte, now time.Time) (*memCred, *DelegationRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	slot := &s.recent[(int(sum[0])<<8|int(sum[1]))&(recentSlots-1)]
	c := slot.Load()
	if c == nil || !c.heldUnder(sum) || c.gone.Load() {
		var key [33]byte
		key[0] = 1
		copy(key[1:], sum[:])
		s.mu.RLock()
		c = s.creds[string(key[:])]
		s.mu.RUnlock()
		if c == nil {
			return nil, nil, ErrNotFound
		}
		slot.Store(c)
	}
	if !c.rec.ExpiresAt.After(now) {
		return nil, nil, ErrNotFound
	}
	return c, c.del.snap(), nil
}

// Delegation implements Store.
func (s *MemoryStore) Delegation(ctx context.Context, authorizationID string) (*DelegationRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.delegations[authorizationID]
	if !ok {
		return nil, ErrNotFound
	}
	return d.snap().clone(), nil
}

// RecordCheck implements Store.
func (s *MemoryStore) RecordCheck(ctx context.Context, authorizationID string, at time.Time, scope pass.Scope, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.delegations[authorizationID]
	if !ok {
		return ErrNotFound
	}
	if d.snap().Invalidated {
		return nil
	}
	d.update(func(r *DelegationRecord) {
		if at.After(r.CheckedAt) {
			r.CheckedAt = at
		}
		r.CurrentScope = cloneScope(scope)
		r.Stale = false
		if !expiresAt.IsZero() && (r.ExpiresAt.IsZero() || expiresAt.Before(r.ExpiresAt)) {
			r.ExpiresAt = expiresAt
		}
	})
	return nil
}

// RecordMissionCheck implements Store.
func (s *MemoryStore) RecordMissionCheck(ctx context.Context, authorizationID string, c MissionCheck) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.delegations[authorizationID]
	if !ok {
		return false, ErrNotFound
	}
	if d.snap().Invalidated {
		return false, nil
	}
	fresh := c.Version >= d.snap().MissionVersion
	d.update(func(r *DelegationRecord) {
		if c.At.After(r.CheckedAt) {
			r.CheckedAt = c.At
		}
		if !c.ExpiresAt.IsZero() && (r.ExpiresAt.IsZero() || c.ExpiresAt.Before(r.ExpiresAt)) {
			r.ExpiresAt = c.ExpiresAt
		}
		switch {
		case fresh:
			if c.Scope != nil {
				r.CurrentScope = cloneScope(c.Scope)
			}
			r.MissionVersion, r.MissionState = c.Version, c.State
			r.Stale = false
			if c.Stage != "" {
				r.Stage = c.Stage
			}
		case c.Scope != nil:
			r.CurrentScope = r.CurrentScope.Intersect(c.Scope)
		}
	})
	return fresh, nil
}

// Invalidate implements Store.
func (s *MemoryStore) Invalidate(ctx context.Context, authorizationID string, at time.Time, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.delegations[authorizationID]
	if !ok {
		return ErrNotFound
	}
	if d.invalidate(at, reason) {
		s.dirty = true // a full store may now drop its records
	}
	return nil
}

// invalidate marks d invalid unless it was already, and reports whether it
// did.
func (d *memDelegation) invalidate(at time.Time, reason string) bool {
	if d.snap().Invalidated {
		return false
	}
	d.update(func(r *DelegationRecord) { markInvalid(r, at, reason) })
	return true
}

func markInvalid(r *DelegationRecord, at time.Time, reason string) {
	r.Invalidated, r.InvalidatedAt, r.InvalidReason = true, at, reason
}

// InvalidateTree implements Store: the delegation and the descendants
// indexed under its mission, under one lock.
func (s *MemoryStore) InvalidateTree(ctx context.Context, authorizationID string, at time.Time, reason string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.delegations[authorizationID]
	if !ok {
		return 0, ErrNotFound
	}
	n := 0
	if d.invalidate(at, reason) {
		n++
	}
	n += s.invalidateDescendants(d, at, reason, false)
	if n > 0 {
		s.dirty = true // a full store may now drop their records
	}
	return n, nil
}

// indexKeys are the keys d is indexed under in MemoryStore.missions: its
// own mission (true) and its ancestors (false).
func indexKeys(d *DelegationRecord) map[missionKey]bool {
	keys := make(map[missionKey]bool, len(d.Ancestors)+1)
	for _, a := range d.Ancestors {
		keys[missionKey{d.Authority, d.ConfigurationURL, a}] = false
	}
	if d.MissionID != "" {
		keys[missionKey{d.Authority, d.ConfigurationURL, d.MissionID}] = true
	}
	return keys
}

// invalidateDescendants invalidates the delegations this store holds of
// d's mission's descendants at d's Authority (and, with siblings, the
// other delegations of d's own mission), and counts those it changed. The
// caller holds s.mu.
func (s *MemoryStore) invalidateDescendants(d *memDelegation, at time.Time, reason string, siblings bool) int {
	r := d.snap()
	if r.MissionID == "" {
		return 0
	}
	n := 0
	for id, own := range s.missions[missionKey{r.Authority, r.ConfigurationURL, r.MissionID}] {
		if own && !siblings {
			continue
		}
		if c, ok := s.delegations[id]; ok && c.invalidate(at, "cascade: "+reason) {
			n++
		}
	}
	return n
}

// ApplyEvent implements Store.
func (s *MemoryStore) ApplyEvent(ctx context.Context, e MissionEvent) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.delegations[e.AuthorizationID]
	if !ok || d.snap().Authority != e.Authority {
		return false, ErrNotFound
	}
	if cur := d.snap(); cur.Invalidated || !e.versionOK(cur.MissionVersion) || e.MissionID != "" && cur.MissionID != "" && e.MissionID != cur.MissionID {
		return false, nil
	}
	d.update(func(r *DelegationRecord) {
		if e.Version > r.MissionVersion+1 && r.MissionVersion > 0 {
			r.Stale = true
		}
		if e.Version > 0 && e.Action != EventRecheck {
			r.MissionVersion = e.Version
		}
		switch e.Action {
		case EventRevoke, EventEnd:
			markInvalid(r, e.At, e.Reason)
		case EventHold:
			r.MissionState = pass.MissionSuspended
		case EventNarrow:
			if !e.Scope.SubsetOf(r.CurrentScope) {
				r.Stale = true
			} else if e.Stage != "" {
				r.Stage = e.Stage
			}
			r.CurrentScope = r.CurrentScope.Intersect(e.Scope)
		case EventRecheck:
			r.Stale = true
		}
	})
	if e.Action == EventEnd {
		// The mission ended: its other delegations here and every
		// mission below it end with it.
		s.invalidateDescendants(d, e.At, e.Reason, true)
	}
	if e.Action == EventRevoke || e.Action == EventEnd {
		s.dirty = true // a full store may now drop their records
	}
	return true, nil
}

// Len reports the number of delegations, credentials and initialization
// tokens currently held, expired or not (for tests and metrics).
func (s *MemoryStore) Len() (delegations, credentials, inits int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.delegations), len(s.creds), len(s.inits)
}

// maybePrune sweeps expired records every pruneEvery writes, or at once
// when force is set (a table is full): then credentials and
// initialization tokens of invalidated delegations and used tokens go
// too. Each pass learns when the next record can expire, so a sweep that
// could drop nothing (nothing expired yet and, for a forced one, nothing
// invalidated or used since the last) is skipped. The caller holds s.mu.
func (s *MemoryStore) maybePrune(now time.Time, force bool) {
	s.writes++
	periodic := s.writes%pruneEvery == 0
	if !periodic && !force || now.IsZero() {
		return
	}
	if s.sweepKnown && now.Before(s.expireFrom) && (!force || now.Before(s.forceFrom) && !s.dirty) {
		return
	}
	if !periodic && !s.lastForcedAt.IsZero() {
		if now.After(s.lastForced) {
			if now.Sub(s.lastForced) < forcedSweepEvery {
				return
			}
		} else if time.Since(s.lastForcedAt) < forcedSweepEvery {
			return
		}
	}
	if force {
		s.lastForced, s.lastForcedAt = now, time.Now()
	}
	s.sweeps++
	invalidated := func(id string) bool {
		d, ok := s.delegations[id]
		return ok && d.snap().Invalidated
	}
	var expireFrom, forceFrom time.Time // over the records kept
	keep := func(expires, forced time.Time) {
		if expireFrom.IsZero() || expires.Before(expireFrom) {
			expireFrom = expires
		}
		if forceFrom.IsZero() || forced.Before(forceFrom) {
			forceFrom = forced
		}
	}
	for h, c := range s.creds {
		if !c.rec.ExpiresAt.After(now) || force && invalidated(c.rec.AuthorizationID) {
			c.gone.Store(true)
			delete(s.creds, h)
			s.release(c.rec.AuthorizationID)
			continue
		}
		keep(c.rec.ExpiresAt, c.rec.ExpiresAt)
	}
	for h, r := range s.inits {
		dead := !r.ExpiresAt.Add(initRetention).After(now)
		if force {
			dead = r.Used || !r.ExpiresAt.After(now) || invalidated(r.AuthorizationID)
		}
		if dead {
			delete(s.inits, h)
			s.release(r.AuthorizationID)
			continue
		}
		keep(r.ExpiresAt.Add(initRetention), r.ExpiresAt)
	}
	s.expireFrom, s.forceFrom, s.sweepKnown = expireFrom, forceFrom, !expireFrom.IsZero()
	if force {
		s.dirty = false
	}
}

// noteExpiry lowers the sweep times for a record stored now, which a
// periodic sweep drops from expires on and a forced one from forced on.
// The caller holds s.mu.
func (s *MemoryStore) noteExpiry(expires, forced time.Time) {
	if s.sweepKnown {
		s.expireFrom = minTime(s.expireFrom, expires)
		s.forceFrom = minTime(s.forceFrom, forced)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// release drops one reference to a delegation and forgets the delegation
// when nothing names it any more.
func (s *MemoryStore) release(id string) {
	d, ok := s.delegations[id]
	if !ok {
		return
	}
	d.refs--
	if d.refs <= 0 {
		delete(s.delegations, id)
		for k := range indexKeys(d.snap()) {
			delete(s.missions[k], id)
			if len(s.missions[k]) == 0 {
				delete(s.missions, k)
			}
		}
	}
}

// SavePendingClose implements Store.
func (s *MemoryStore) SavePendingClose(ctx context.Context, p *PendingClose) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.closes[p.AuthorizationID]; !ok && len(s.closes) >= s.limit {
		if s.closesKnown && p.NextAttempt.Before(s.closesFrom) {
			return ErrStoreFull // none has expired: a scan would drop nothing
		}
		var from time.Time // over the closes kept
		for id, c := range s.closes {
			if !c.ExpiresAt.After(p.NextAttempt) {
				delete(s.closes, id)
			} else if from.IsZero() || c.ExpiresAt.Before(from) {
				from = c.ExpiresAt
			}
		}
		s.closesFrom, s.closesKnown = from, !from.IsZero()
		if len(s.closes) >= s.limit {
			return ErrStoreFull
		}
	}
	s.closes[p.AuthorizationID] = *p
	if s.closesKnown {
		s.closesFrom = minTime(s.closesFrom, p.ExpiresAt)
	}
	return nil
}

// DuePendingCloses implements Store.
func (s *MemoryStore) DuePendingCloses(ctx context.Context, now time.Time, limit int) ([]*PendingClose, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*PendingClose
	for _, c := range s.closes {
		if !c.NextAttempt.After(now) {
			out = append(out, &c)
		}
	}
	slices.SortFunc(out, func(a, b *PendingClose) int {
		if c := a.NextAttempt.Compare(b.NextAttempt); c != 0 {
			return c
		}
		return strings.Compare(a.AuthorizationID, b.AuthorizationID)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// DeletePendingClose implements Store.
func (s *MemoryStore) DeletePendingClose(ctx context.Context, authorizationID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.closes, authorizationID)
	return nil
}
