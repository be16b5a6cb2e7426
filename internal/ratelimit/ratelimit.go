// Package ratelimit is the one rate limiter of the role packages: token
// buckets charged at several levels at once (a client, its network, a
// user, the user's domain, everyone), bounded in memory, and the 429
// answer sent when it refuses a request.
//
// # Overview
//
// Build one [Limiter] per endpoint with [New] and ask it before reading a
// request's body; when it refuses, answer with [Deny], which sends 429 with
// Retry-After. It never fails open: when its tables are full, newcomers share
// one bucket rather than get a fresh one.
//
// # Usage
//
//	l, err := ratelimit.New(limit, defaults, 10000, time.Now)
//	if ok, wait := l.AllowClient(ratelimit.ClientAddr(r)); !ok {
//		ratelimit.Deny(w, r, wait, tel, "issuance")
//		return
//	}
//
// # How it works
//
// A [Limit] gives each level a [Rate]: a bucket of at most Burst tokens
// refilled at PerSecond tokens a second. A request takes one token at every
// level it is charged to and passes only if every level has one. When a
// client's own level (Client, Network, User, Domain) refuses, the tokens
// taken at the others are given back; when the Overall level refuses, they
// are not: a refused attempt costs its sender, so retrying in a loop while
// everyone is refused gains nothing.
//
// Client addresses are charged twice: to the address (an IPv6 /64, which
// one host commonly holds whole, or an IPv4 address) and to its network (an
// IPv6 /48, an IPv4 /24). Rotating addresses inside one network therefore
// gains nothing, and the Overall level bounds what all networks together
// can do, which is what keeps a bounded store from filling.
//
// # Fair share of the Overall level
//
// Without more, a few networks retrying as fast as they may could take
// every Overall token as it refills and lock everyone else out. So each
// network also has a share bucket at the Overall level, refilled at 1/8 of
// the Overall rate and holding 1/16 of its burst, from which it takes a
// token whenever it can. While the Overall bucket is less than half full
// and requests come from more than one network, a network passes only with
// a share token. Eight networks together then take at most the Overall
// rate, and their share bursts at most half the burst: however hard up to
// eight networks push, the Overall bucket never runs dry once it is half
// empty, so a network within its share (1/8 of the rate) is never refused
// at that level. A network alone is not held to its share.
//
// Each level keeps at most MaxKeys buckets, in shards with a
// least-recently-used order. The table never fails open: a bucket is
// dropped only when it is full again (a full bucket is what an unknown key
// gets anyway, so dropping it loses nothing), and a key that finds its
// shard full of non-full buckets is charged to one shared overflow bucket
// instead of a fresh one. A client cannot reset its own empty bucket by
// sending many other keys: its bucket stays until it has refilled.
package ratelimit

import (
	"container/list"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// Rate is one token bucket: Burst requests at once, refilled at PerSecond
// requests a second. The zero value means the default; a negative
// PerSecond turns the level off.
type Rate struct {
	// PerSecond is the sustained rate. If zero, the default; negative: no
	// limit at this level.
	PerSecond float64
	// Burst is how many requests may come at once after a quiet period. If
	// zero, the default; it must not be negative.
	Burst int
}

// Limit is the rate of one endpoint at each level a request is charged to;
// a request passes only if every level allows it. A level the endpoint
// does not have (a user on an endpoint that names none) must be left zero
// or off.
type Limit struct {
	// Client is one client: an IPv6 /64 or an IPv4 address (or, with a
	// custom key that is not an IP address, the key itself).
	Client Rate
	// Network is the client's network: an IPv6 /48 or an IPv4 /24, so that
	// rotating addresses inside one allocation gains nothing.
	Network Rate
	// User is one mailbox, however spelled, where the endpoint names a
	// user, so no one is flooded with requests for a person.
	User Rate
	// Domain is the domain of the user's e-mail address: a flood naming
	// fresh mailboxes of one domain is still one budget.
	Domain Rate
	// Overall is every client together: what bounds the work and the
	// records a flood from many networks can cause.
	Overall Rate
}

// Levels, in the order they are charged.
const (
	levelClient = iota
	levelNetwork
	levelUser
	levelDomain
	levelOverall
	numLevels
)

var levelNames = [numLevels]string{"Client", "Network", "User", "Domain", "Overall"}

func (l *Limit) rates() [numLevels]*Rate {
	return [numLevels]*Rate{&l.Client, &l.Network, &l.User, &l.Domain, &l.Overall}
}

// Limiter charges requests to the levels of a Limit. It is safe for
// concurrent use.
type Limiter struct {
	levels  [numLevels]*table // nil: off, or not a level of this endpoint; levelOverall is always nil
	overall *overallLevel     // nil: off
}

// New returns the Limiter of lim, its zero fields taken from def. A level
// whose default is zero does not exist for the endpoint: setting it is an
// error. maxKeys bounds the buckets of each level (below 16, 16); now is
// the clock (nil: time.Now). The error names the field, relative to the
// Limit ("Client.Burst must not be negative").
func New(lim, def Limit, maxKeys int, now func() time.Time) (*Limiter, error) {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{}
	got, want := lim.rates(), def.rates()
	for i := range numLevels {
		r, d := *got[i], *want[i]
		switch {
		case math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0):
			return nil, fmt.Errorf("%s.PerSecond must be a finite number", levelNames[i])
		case r.Burst < 0:
			return nil, fmt.Errorf("%s.Burst must not be negative", levelNames[i])
		case d.PerSecond == 0 && r != (Rate{}) && !(r.PerSecond < 0):
			return nil, fmt.Errorf("%s does not apply to this endpoint", levelNames[i])
		}
		if r.PerSecond == 0 {
			r.PerSecond = d.PerSecond
		}
		if r.PerSecond <= 0 {
			continue
		}
		if r.Burst == 0 {
			r.Burst = d.Burst
		}
		if r.Burst == 0 { // a rate without a burst: a second's worth
			r.Burst = max(1, int(math.Ceil(r.PerSecond)))
		}
		if i == levelOverall {
			l.overall = newOverall(r.PerSecond, r.Burst, maxKeys, now)
			continue
		}
		l.levels[i] = newTable(r.PerSecond, r.Burst, maxKeys, now)
	}
	return l, nil
}

// AllowClient charges a request from client (an address from [ClientAddr],
// or any other key) to its Client, Network and Overall levels. It reports
// whether the request may proceed and, when it may not, how long until it
// could. An IP address costs no allocation.
func (l *Limiter) AllowClient(client string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	if ip, err := netip.ParseAddr(client); err == nil {
		return l.allowAddr(ip)
	}
	k := bucketKey{s: bounded(client)}
	return l.allowClient(k, k)
}

// AllowPeer is AllowClient(ClientAddr(r)) without the allocation of the
// address's text: the path a flood of requests from one peer takes, each
// refused before anything else of it is read.
func (l *Limiter) AllowPeer(r *http.Request) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return l.allowAddr(ip)
	}
	return l.AllowClient(r.RemoteAddr)
}

// allowAddr charges the address ip, its key bytes on the stack.
func (l *Limiter) allowAddr(ip netip.Addr) (bool, time.Duration) {
	var buf [10]byte
	c, n := addrKeys(ip, &buf)
	return l.allowClient(bucketKey{b: c}, bucketKey{b: n})
}

func (l *Limiter) allowClient(client, network bucketKey) (bool, time.Duration) {
	var keys [numLevels]bucketKey
	keys[levelClient], keys[levelNetwork] = client, network
	ok, wait := l.allow(&keys, levelClient, levelNetwork)
	if !ok {
		return false, wait
	}
	if l.overall == nil {
		return true, 0
	}
	// Charged last, so an attempt a client's own levels refuse never
	// touches it; refused here, the attempt keeps its cost below.
	return l.overall.take(network)
}

// AllowUser charges a request naming the user email to its User and Domain
// levels. An address that does not parse is charged as written, lowercased,
// to both.
func (l *Limiter) AllowUser(email string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	var keys [numLevels]bucketKey
	u, d := userKeys(email)
	keys[levelUser], keys[levelDomain] = bucketKey{s: u}, bucketKey{s: d}
	return l.allow(&keys, levelUser, levelDomain)
}

// allow takes a token at every given level, or none: when one refuses, the
// others get theirs back.
func (l *Limiter) allow(keys *[numLevels]bucketKey, levels ...int) (bool, time.Duration) {
	var taken [numLevels]*bucketRef
	var wait time.Duration
	refused := false
	for _, i := range levels {
		t := l.levels[i]
		if t == nil {
			continue
		}
		ref, ok, w := t.take(keys[i])
		if ok {
			taken[i] = ref
			continue
		}
		refused = true
		wait = max(wait, w)
	}
	if !refused {
		return true, 0
	}
	for i, ref := range taken {
		if ref != nil {
			l.levels[i].refund(ref)
		}
	}
	return false, wait
}

// Len returns the number of keyed buckets held, over every level (the
// Overall level's shares included).
func (l *Limiter) Len() int {
	n := 0
	for _, t := range l.levels {
		if t != nil {
			n += t.len()
		}
	}
	if l.overall != nil {
		n += l.overall.shares.len()
	}
	return n
}

// fairShares is how many networks share the Overall level fairly: each
// network's share is 1/fairShares of the Overall rate.
const fairShares = 8

// overallLevel is the Overall bucket and each network's share of it (see
// the package documentation).
type overallLevel struct {
	now    func() time.Time
	rate   float64
	burst  float64
	window time.Duration // how long a request from another network counts as others waiting
	shares *table        // per network: rate/fairShares, burst/(2*fairShares)

	mu      sync.Mutex
	b       bucketRef
	lastNet uint64    // hash of the network of the last attempt (a collision only hides one alternation)
	seen    bool      // whether lastNet is set
	mixedAt time.Time // when an attempt last came from another network than the one before
}

func newOverall(perSecond float64, burst, maxKeys int, now func() time.Time) *overallLevel {
	o := &overallLevel{now: now, rate: perSecond, burst: float64(max(burst, 1))}
	o.b = bucketRef{mu: &o.mu, tokens: o.burst, last: now()}
	// Others count as waiting for as long as half the bucket takes to
	// refill, at least a second.
	o.window = max(time.Second, time.Duration(o.burst/2/o.rate*float64(time.Second)))
	o.shares = newTable(perSecond/fairShares, max(1, int(o.burst/(2*fairShares))), maxKeys, now)
	return o
}

// take takes an Overall token for a request from network.
func (o *overallLevel) take(network bucketKey) (bool, time.Duration) {
	now := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	b := &o.b
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(o.burst, b.tokens+d.Seconds()*o.rate)
		b.last = now
	}
	if h := network.hash(o.shares.seed); !o.seen || h != o.lastNet {
		if o.seen {
			o.mixedAt = now
		}
		o.lastNet, o.seen = h, true
	}
	if b.tokens < 1 {
		wait := time.Duration(math.Ceil((1 - b.tokens) / o.rate * float64(time.Second)))
		return false, max(wait, time.Nanosecond)
	}
	// The share is taken whenever it can be, so a network that used the
	// bucket alone starts from its share when others arrive.
	_, shared, wait := o.shares.take(network)
	contended := b.tokens-1 < o.burst/2 && now.Sub(o.mixedAt) < o.window
	if !shared && contended {
		return false, wait
	}
	b.tokens--
	return true, 0
}

// addrKeys returns the Client and Network keys of an IP address, in buf:
// its prefix bytes behind a NUL and the version, cheaper than text and
// apart from any printable key.
func addrKeys(ip netip.Addr, buf *[10]byte) (addr, network []byte) {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		*buf = [10]byte{0, 4, b[0], b[1], b[2], b[3]}
		return buf[:6], buf[:5]
	}
	b := ip.As16()
	*buf = [10]byte{0, 6, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]}
	return buf[:10], buf[:8]
}

// bucketKey is the key of a bucket: text, or bytes the caller keeps on its
// stack (an address's); the table copies it only to create a bucket.
type bucketKey struct {
	s string
	b []byte // when not nil, the key
}

func (k bucketKey) hash(seed maphash.Seed) uint64 {
	if k.b != nil {
		return maphash.Bytes(seed, k.b)
	}
	return maphash.String(seed, k.s)
}

// copy returns the key as a string of its own, so that neither the
// caller's bytes nor its string are kept (and may stay on its stack).
func (k bucketKey) copy() string {
	if k.b != nil {
		return string(k.b)
	}
	return strings.Clone(k.s)
}

// userKeys returns the User and Domain keys of an e-mail address: one
// mailbox is one key however its domain or local part is spelled.
func userKeys(email string) (user, domain string) {
	local, d, err := pass.SplitEmail(email)
	if err != nil {
		s := strings.ToLower(email)
		if at := strings.LastIndexByte(s, '@'); at >= 0 {
			return bounded(s), bounded(s[at+1:])
		}
		return bounded(s), bounded(s)
	}
	return strings.ToLower(local) + "@" + d, d
}

// maxKeyLen bounds the memory one key can hold in a table.
const maxKeyLen = 256

// longKeys hashes keys longer than maxKeyLen.
var longKeys = maphash.MakeSeed()

// bounded returns k, or a fixed-size digest of it when k is longer than
// maxKeyLen (a custom Key may return a header of any length): MaxKeys
// then bounds the memory of a table whatever the keys.
func bounded(k string) string {
	if len(k) <= maxKeyLen {
		return k
	}
	var b [10]byte
	b[0], b[1] = 0, 'h'
	binary.BigEndian.PutUint64(b[2:], maphash.String(longKeys, k))
	return string(b[:])
}

// shards is the number of independently locked parts of a table.
const shards = 16

// evictScan is how many buckets from the least recently used end a full
// shard examines for one that has refilled.
const evictScan = 8

// table is the keyed buckets of one level.
type table struct {
	rate     float64 // tokens per second, > 0
	burst    float64 // bucket capacity, >= 1
	now      func() time.Time
	seed     maphash.Seed
	shards   [shards]shard
	overflow struct {
		mu sync.Mutex
		b  bucketRef
	}
}

type shard struct {
	mu      sync.Mutex
	max     int
	buckets map[string]*list.Element // of *bucketRef
	lru     list.List                // front = most recently used
}

// bucketRef is a bucket and the lock guarding it.
type bucketRef struct {
	mu     *sync.Mutex
	key    string
	tokens float64
	last   time.Time
}

func newTable(perSecond float64, burst, maxKeys int, now func() time.Time) *table {
	t := &table{rate: perSecond, burst: float64(max(burst, 1)), now: now, seed: maphash.MakeSeed()}
	maxKeys = max(maxKeys, shards)
	for i := range t.shards {
		t.shards[i].max = maxKeys / shards
		if i < maxKeys%shards {
			t.shards[i].max++
		}
		t.shards[i].buckets = make(map[string]*list.Element)
	}
	t.overflow.b = bucketRef{mu: &t.overflow.mu, tokens: t.burst, last: now()}
	return t
}

// refill brings b up to now; a clock that goes back refills nothing.
func (t *table) refill(b *bucketRef, now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(t.burst, b.tokens+d.Seconds()*t.rate)
		b.last = now
	}
}

// take takes a token from key's bucket.
func (t *table) take(key bucketKey) (*bucketRef, bool, time.Duration) {
	now := t.now()
	s := &t.shards[key.hash(t.seed)%shards]
	s.mu.Lock()
	var (
		b     *bucketRef
		e     *list.Element
		found bool
	)
	if key.b != nil {
		e, found = s.buckets[string(key.b)]
	} else {
		e, found = s.buckets[key.s]
	}
	if found {
		s.lru.MoveToFront(e)
		b = e.Value.(*bucketRef)
		t.refill(b, now)
	} else if s.lru.Len() < s.max || t.evictLocked(s, now) {
		b = &bucketRef{mu: &s.mu, key: key.copy(), tokens: t.burst, last: now}
		s.buckets[b.key] = s.lru.PushFront(b)
	} else {
		// Every bucket in reach still carries state: rather than forget
		// one (and hand its owner a full bucket), the newcomer shares the
		// overflow bucket with every other key the table cannot hold.
		s.mu.Unlock()
		b = &t.overflow.b
		b.mu.Lock()
		t.refill(b, now)
	}
	defer b.mu.Unlock()
	if b.tokens >= 1 {
		b.tokens--
		return b, true, 0
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / t.rate * float64(time.Second)))
	return nil, false, max(wait, time.Nanosecond)
}

// evictLocked drops one bucket that has refilled to Burst, looking at a
// few from the least recently used end; the ones still refilling go to the
// front so the next look sees others. It reports whether one was dropped.
func (t *table) evictLocked(s *shard, now time.Time) bool {
	for range min(evictScan, s.lru.Len()) {
		e := s.lru.Back()
		b := e.Value.(*bucketRef)
		t.refill(b, now)
		if b.tokens >= t.burst {
			s.lru.Remove(e)
			delete(s.buckets, b.key)
			return true
		}
		s.lru.MoveToFront(e)
	}
	return false
}

// refund gives back a token taken by take.
func (t *table) refund(b *bucketRef) {
	b.mu.Lock()
	b.tokens = min(t.burst, b.tokens+1)
	b.mu.Unlock()
}

func (t *table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// ClientAddr returns the address of the peer that sent r: the IP address
// of r.RemoteAddr, without zone and with IPv4-mapped IPv6 addresses
// unmapped. Behind a reverse proxy every request comes from the proxy:
// such deployments must take the address the proxy forwards instead. An
// unparseable RemoteAddr is returned as is.
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return r.RemoteAddr
	}
	return ip.Unmap().WithZone("").String()
}

// RetryAfterSeconds is the Retry-After value for a wait: whole seconds,
// rounded up, at least 1.
func RetryAfterSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

// The 429 answer, prepared once: under a flood, a refusal must cost as
// little as the request that caused it.
var (
	denied  = httpx.Prepare(pass.Fail(pass.CodeRateLimited, "too many requests; retry later"))
	noStore = []string{"no-store"}
	// retryAfter holds the Retry-After values up to maxSharedRetryAfter
	// seconds; a longer wait (a very slow rate) formats its own.
	retryAfter = func() (v [maxSharedRetryAfter + 1][]string) {
		for i := range v {
			v[i] = []string{strconv.Itoa(i)}
		}
		return v
	}()
)

const maxSharedRetryAfter = 64

// Deny answers 429 with a Retry-After header and the structured error body
// {"error":{"code":"rate_limited",...}}. The message is generic: it names
// neither the key nor the limit, so a refusal tells a prober nothing about
// a user. Every refusal is counted here, in t's agentpass.rate_limited
// (t may be nil), so no role can refuse without it showing. The answer is
// prepared once and a refusal allocates nothing for it; the header values
// it sets are shared, so nothing may change them in place.
func Deny(w http.ResponseWriter, r *http.Request, wait time.Duration, t *telemetry.T, endpoint string) {
	t.RateLimited(r.Context(), endpoint)
	h := w.Header()
	if s := RetryAfterSeconds(wait); s <= maxSharedRetryAfter {
		h["Retry-After"] = retryAfter[s][:1:1]
	} else {
		h["Retry-After"] = []string{strconv.Itoa(s)}
	}
	h["Cache-Control"] = noStore[:1:1]
	denied.Write(w)
}
