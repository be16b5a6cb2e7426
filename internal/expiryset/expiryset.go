// Package expiryset is a bounded set of keys that each expire at their own
// time: the core of dpop.MemoryReplayCache.
//
// # Overview
//
// [Set.Add] records a key for an owner until its expiry and says whether it
// was already there; expired keys are evicted first, and a per-owner quota
// keeps one owner from filling the set. A Set is not safe for concurrent
// use; callers hold their own lock.
//
// # Usage
//
//	set := expiryset.New()
//	lim := expiryset.Limits{Max: 100000, PerOwner: 1000, Reserve: 25000}
//	switch set.Add(expiryset.KeyOf(iss, jti), expiryset.KeyOf(iss), exp, now, lim) {
//	case expiryset.Present:
//		// a replay
//	case expiryset.Full, expiryset.OverQuota:
//		// refuse: forgetting an unexpired key would allow a replay
//	}
package expiryset

import (
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"time"
)

// Key is the first 128 bits of the SHA-256 of length-prefixed parts (see
// KeyOf). Two distinct pairs collide with probability about n/2^128 for n
// held keys; a collision can only make a fresh pair look recorded, so a
// replay cache errs on the side of refusing.
type Key [16]byte

// KeyOf hashes the parts with each length prefixed, so ("a", "bc") and
// ("ab", "c") give different keys, and entries have a fixed size whatever
// the size of the parts.
//
// The parts are laid out in a buffer on the stack and hashed at once: a
// replay cache computes two keys per record, and a streaming hash costs an
// allocation each. Parts longer than the buffer take the heap, same bytes.
func KeyOf(parts ...string) Key {
	var buf [256]byte
	b := buf[:0]
	for _, p := range parts {
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
		b = append(b, p...)
	}
	sum := sha256.Sum256(b)
	var k Key
	copy(k[:], sum[:])
	return k
}

// Limits bound a Set. Max is the most keys held at once. PerOwner is how
// many keys one owner may hold once fewer than Reserve free places are
// left, so that one owner (or a few) filling the set still leaves Reserve
// places for the others, while a lone owner may use Max - Reserve.
type Limits struct {
	Max, PerOwner, Reserve int
}

// Set holds keys until their expiry. The zero value is not usable; call New.
type Set struct {
	entries map[Key]entry
	owners  map[Key]int // unexpired-or-not-yet-evicted keys per owner
	byExp   expiryHeap
}

type entry struct {
	exp   int64 // Unix nanoseconds
	owner Key
}

// New returns an empty set.
func New() *Set { return &Set{entries: make(map[Key]entry), owners: make(map[Key]int)} }

// Outcome is what Add did.
type Outcome int

// Outcomes of Add.
const (
	Added     Outcome = iota // the key was recorded until its expiry
	Present                  // the key is held and unexpired: a replay
	Expired                  // exp is not after now: nothing recorded
	Full                     // the set holds Max keys: nothing recorded
	OverQuota                // the owner holds PerOwner keys and the reserve is reached: nothing recorded
)

// Add evicts the keys expired at now, then records k for owner until exp
// unless it is already held, already expired, or the limits refuse it.
func (s *Set) Add(k, owner Key, exp, now time.Time, lim Limits) Outcome {
	n := nanos(now)
	s.evict(n)
	if e, ok := s.entries[k]; ok && e.exp > n {
		return Present
	}
	e := nanos(exp)
	if e <= n {
		return Expired
	}
	held := len(s.entries)
	switch {
	case held >= lim.Max:
		return Full
	case held >= lim.Max-lim.Reserve && s.owners[owner] >= lim.PerOwner:
		return OverQuota
	}
	s.entries[k] = entry{exp: e, owner: owner}
	s.owners[owner]++
	heap.Push(&s.byExp, expiryItem{key: k, exp: e})
	return Added
}

// Contains reports whether k is held and unexpired at now. It changes
// nothing.
func (s *Set) Contains(k Key, now time.Time) bool {
	e, ok := s.entries[k]
	return ok && e.exp > nanos(now)
}

// Bounds of the times UnixNano can represent (years 1677 to 2262).
var (
	maxNanos = time.Unix(0, math.MaxInt64)
	minNanos = time.Unix(0, math.MinInt64)
)

// nanos is t in Unix nanoseconds, clamped to the int64 range: UnixNano is
// undefined outside it, and a far expiry that wrapped negative would look
// expired, leaving a replayed key unrecorded.
func nanos(t time.Time) int64 {
	switch {
	case t.After(maxNanos):
		return math.MaxInt64
	case t.Before(minNanos):
		return math.MinInt64
	}
	return t.UnixNano()
}

// evict removes every key whose expiry is not after n, earliest first.
func (s *Set) evict(n int64) {
	for len(s.byExp) > 0 && s.byExp[0].exp <= n {
		it := heap.Pop(&s.byExp).(expiryItem)
		e, ok := s.entries[it.key]
		if !ok || e.exp != it.exp {
			continue
		}
		delete(s.entries, it.key)
		if c := s.owners[e.owner] - 1; c > 0 {
			s.owners[e.owner] = c
		} else {
			delete(s.owners, e.owner)
		}
	}
}

// Len is the number of keys held, expired or not yet evicted.
func (s *Set) Len() int { return len(s.entries) }

// OwnerLen is the number of keys held for owner, expired or not yet
// evicted.
func (s *Set) OwnerLen(owner Key) int { return s.owners[owner] }

type expiryItem struct {
	key Key
	exp int64
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
