package discovery

import (
	"container/list"
	"sync"
	"time"
)

// cache is a bounded map with per-entry expiry and least-recently-used
// eviction. It is safe for concurrent use.
type cache[V any] struct {
	mu  sync.Mutex
	max int
	ll  *list.List // front = most recently used
	m   map[string]*list.Element
}

type cacheItem[V any] struct {
	key     string
	val     V
	expires time.Time
}

func newCache[V any](max int) *cache[V] {
	return &cache[V]{max: max, ll: list.New(), m: make(map[string]*list.Element)}
}

// get returns the value for key if it has not expired at now. An expired
// entry is removed.
func (c *cache[V]) get(key string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.liveLocked(c.m[key], now)
}

// getBytes is get for a key built in the caller's buffer: the lookup makes
// no string of it.
func (c *cache[V]) getBytes(key []byte, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.liveLocked(c.m[string(key)], now)
}

func (c *cache[V]) liveLocked(e *list.Element, now time.Time) (V, bool) {
	var zero V
	if e == nil {
		return zero, false
	}
	it := e.Value.(*cacheItem[V])
	if !now.Before(it.expires) {
		c.ll.Remove(e)
		delete(c.m, it.key)
		return zero, false
	}
	c.ll.MoveToFront(e)
	return it.val, true
}

// put stores val under key until expires, evicting the least recently used
// entry when the cache is full.
func (c *cache[V]) put(key string, val V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		it := e.Value.(*cacheItem[V])
		it.val, it.expires = val, expires
		c.ll.MoveToFront(e)
		return
	}
	for c.ll.Len() >= c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.m, last.Value.(*cacheItem[V]).key)
	}
	c.m[key] = c.ll.PushFront(&cacheItem[V]{key: key, val: val, expires: expires})
}

func (c *cache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

func (c *cache[V]) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.m)
}

// clamp bounds d to [lo, hi].
func clamp(d, lo, hi time.Duration) time.Duration {
	return max(lo, min(d, hi))
}
