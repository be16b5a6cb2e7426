package deploy

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// Headers of the [Balancer].
const (
	// PinHeader sends a request to the replica with this index; requests
	// without it are spread round-robin.
	PinHeader = "X-Test-Replica"
	// ServedByHeader names the index of the replica that answered.
	ServedByHeader = "X-Test-Served-By"
)

// Balancer is a load balancer in front of the replicas of one role: it
// sends each request to the next replica (round-robin), or to the one named
// by PinHeader, and counts what each replica served, by path. It is safe
// for concurrent use.
type Balancer struct {
	backends []http.Handler
	next     atomic.Uint64

	mu   sync.Mutex
	hits map[string][]int
}

// NewBalancer returns a balancer over backends (at least one).
func NewBalancer(backends ...http.Handler) *Balancer {
	if len(backends) == 0 {
		panic("deploy: NewBalancer needs a backend")
	}
	return &Balancer{backends: backends, hits: map[string][]int{}}
}

// ServeHTTP implements http.Handler.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int((b.next.Add(1) - 1) % uint64(len(b.backends)))
	if v := r.Header.Get(PinHeader); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n >= len(b.backends) {
			http.Error(w, "no such replica", http.StatusBadRequest)
			return
		}
		i = n
	}
	b.mu.Lock()
	h := b.hits[r.URL.Path]
	if h == nil {
		h = make([]int, len(b.backends))
		b.hits[r.URL.Path] = h
	}
	h[i]++
	b.mu.Unlock()
	w.Header().Set(ServedByHeader, strconv.Itoa(i))
	b.backends[i].ServeHTTP(w, r)
}

// Hits returns how many requests for path each replica served.
func (b *Balancer) Hits(path string) []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]int, len(b.backends))
	copy(out, b.hits[path])
	return out
}
