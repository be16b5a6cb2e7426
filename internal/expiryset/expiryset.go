// Package expiryset is a set of fixed-size keys that each expire at their
// own time, with expired keys evicted in order: the core of the in-memory
// proof replay caches (dpop.MemoryReplayCache and the service's memory
// store). It is not safe for concurrent use; callers hold their own lock.
package expiryset

import (
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// Key is the SHA-256 of length-prefixed parts (see KeyOf).
type Key [sha256.Size]byte

// KeyOf hashes the parts with each length prefixed, so ("a", "bc") and
// ("ab", "c") give different keys, and entries have a fixed size whatever
// the size of the parts.
func KeyOf(parts ...string) Key {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	var k Key
	h.Sum(k[:0])
	return k
}

// Set holds keys until their expiry. The zero value is not usable; call New.
type Set struct {
	entries map[Key]time.Time
	byExp   expiryHeap
}

// New returns an empty set.
func New() *Set { return &Set{entries: make(map[Key]time.Time)} }

// Outcome is what Add did.
type Outcome int

// Outcomes of Add.
const (
	Added   Outcome = iota // the key was recorded until its expiry
	Present                // the key is held and unexpired: a replay
	Expired                // exp is not after now: nothing recorded
	Full                   // the set holds max unexpired keys: nothing recorded
)

// Add evicts the keys expired at now, then records k until exp unless it is
// already held, already expired, or the set holds max keys.
func (s *Set) Add(k Key, exp, now time.Time, max int) Outcome {
	for len(s.byExp) > 0 && !s.byExp[0].exp.After(now) {
		it := heap.Pop(&s.byExp).(expiryItem)
		if e, ok := s.entries[it.key]; ok && !e.After(now) {
			delete(s.entries, it.key)
		}
	}
	if e, ok := s.entries[k]; ok && e.After(now) {
		return Present
	}
	if !exp.After(now) {
		return Expired
	}
	if len(s.entries) >= max {
		return Full
	}
	s.entries[k] = exp
	heap.Push(&s.byExp, expiryItem{key: k, exp: exp})
	return Added
}

// Len is the number of keys held, expired or not yet evicted.
func (s *Set) Len() int { return len(s.entries) }

type expiryItem struct {
	key Key
	exp time.Time
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
