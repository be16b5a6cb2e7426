package authoritypg

import (
	"container/heap"
	"encoding/json"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// defaultKnownPasses is how many issued rows a Store remembers unless
// WithKnownPasses says otherwise: a few seconds of issuance at thousands
// per second.
const defaultKnownPasses = 4096

// Whatever the number of entries, the rows held are bounded in bytes too:
// a Service chooses its scope names and a Harness its task description,
// so one row can be a few hundred KiB, and auto-approved issuance at the
// rate limits could otherwise fill the map with them. A row larger than
// maxKnownRow is not remembered (it takes the read), and the map holds at
// most knownBytesPerEntry bytes per entry of its bound in all, measured as
// the row's JSON encoding plus a fixed overhead.
const (
	maxKnownRow        = 8 << 10
	knownBytesPerEntry = 4 << 10
	knownRowOverhead   = 512
)

// WithKnownPasses sets how many passes this store issued (CreateRequest of
// an approved root request, RotatePass) it remembers the row of, so that
// their consumption can skip the read of the row and send only its
// conditional write: one round trip instead of two. Safety never rests on
// the remembered row: the write applies only if the row is still as
// remembered, and otherwise the consumption reads and writes as it would
// without it. Each entry costs the row: about 1.5 KiB with a short task
// description, a few scopes and a holder key; rows over 8 KiB are not
// remembered, and the rows held take at most 4 KiB per entry of n in all
// (16 MiB by default). Default 4096; n <= 0 remembers nothing.
func WithKnownPasses(n int) Option {
	return func(s *Store) { s.known = newKnownPasses(n) }
}

// knownPasses maps a pass hash to the row this store wrote for it, bounded
// in entries. An entry leaves when it is taken (whatever the consumption
// then finds), when its pass expires, when this store writes its mission
// again (a rotation, a transition), or, when the map is full, in favour
// of a newer one (the soonest to expire goes first). A taken row belongs
// to the taker: no other reference to it remains.
type knownPasses struct {
	mu        sync.Mutex
	max       int
	maxBytes  int // of the rows held, as rowSize measures them
	bytes     int
	byKey     map[string]*knownEntry // by pass hash
	byMission map[string]*knownEntry
	byExp     knownHeap // soonest pass expiry first
}

type knownEntry struct {
	hash string
	size int // rowSize(r)
	r    *authority.Request
	exp  time.Time // the pass's expiry
	i    int       // index in byExp
}

// newKnownPasses returns a map of up to n rows, or nil (remembers
// nothing) when n <= 0.
func newKnownPasses(n int) *knownPasses {
	if n <= 0 {
		return nil
	}
	return &knownPasses{max: n, maxBytes: n * knownBytesPerEntry,
		byKey: make(map[string]*knownEntry), byMission: make(map[string]*knownEntry)}
}

// rowSize estimates the memory r holds: its JSON encoding (every string,
// scope, stage and proposal it carries) and a fixed overhead; 0 when it
// cannot be measured, which is then not remembered.
func rowSize(r *authority.Request) int {
	b, err := json.Marshal(r)
	if err != nil {
		return 0
	}
	return len(b) + knownRowOverhead
}

// knowable reports whether r is a row worth remembering: an approved,
// unconsumed root pass. A sub-agent's consumption reads its ancestors
// anyway, so its row would save nothing.
func knowable(r *authority.Request) bool {
	return r != nil && r.Status == pass.StatusApproved && r.Decision != nil && r.PassHash != "" &&
		r.ParentMissionID == "" && r.ConsumedAt.IsZero()
}

// put remembers r, which the caller hands over (no other reference to it
// may remain), dropping the entries expired at now first.
func (k *knownPasses) put(r *authority.Request, now time.Time) {
	if k == nil || !knowable(r) {
		return
	}
	size := rowSize(r)
	if size == 0 || size > maxKnownRow {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked(now)
	if e, ok := k.byKey[r.PassHash]; ok {
		k.removeLocked(e)
	}
	if e, ok := k.byMission[r.MissionID]; ok { // a rotated pass
		k.removeLocked(e)
	}
	for len(k.byExp) > 0 && (len(k.byExp) >= k.max || k.bytes+size > k.maxBytes) {
		k.removeLocked(k.byExp[0])
	}
	e := &knownEntry{hash: r.PassHash, size: size, r: r, exp: r.Decision.PassExpiresAt}
	k.bytes += size
	k.byKey[e.hash] = e
	k.byMission[r.MissionID] = e
	heap.Push(&k.byExp, e)
}

// take removes and returns the row of passHash, nil when none is known or
// its pass has expired at now.
func (k *knownPasses) take(passHash string, now time.Time) *authority.Request {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked(now)
	e, ok := k.byKey[passHash]
	if !ok {
		return nil
	}
	k.removeLocked(e)
	return e.r
}

// drop forgets the row of the mission missionID, if any.
func (k *knownPasses) drop(missionID string) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if e, ok := k.byMission[missionID]; ok {
		k.removeLocked(e)
	}
}

// len is the number of rows held.
func (k *knownPasses) len() int {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.byKey)
}

// expireLocked drops the entries whose pass has expired at now (zero: none).
func (k *knownPasses) expireLocked(now time.Time) {
	for len(k.byExp) > 0 && !now.IsZero() && !now.Before(k.byExp[0].exp) {
		k.removeLocked(k.byExp[0])
	}
}

func (k *knownPasses) removeLocked(e *knownEntry) {
	heap.Remove(&k.byExp, e.i)
	k.bytes -= e.size
	delete(k.byKey, e.hash)
	delete(k.byMission, e.r.MissionID)
}

// knownHeap orders entries by pass expiry (container/heap).
type knownHeap []*knownEntry

func (h knownHeap) Len() int           { return len(h) }
func (h knownHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h knownHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}

func (h *knownHeap) Push(x any) {
	e := x.(*knownEntry)
	e.i = len(*h)
	*h = append(*h, e)
}

func (h *knownHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
