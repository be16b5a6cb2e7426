package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentpass-go/agentpass/internal/telemetry"
)

// clock is a fake clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// client returns a Limiter with only a Client level.
func client(t testing.TB, perSecond float64, burst, maxKeys int, now func() time.Time) *Limiter {
	t.Helper()
	l, err := New(Limit{Client: Rate{PerSecond: perSecond, Burst: burst}}, Limit{Client: Rate{PerSecond: 1}}, maxKeys, now)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// allowed counts how many of n calls for key are allowed.
func allowed(l *Limiter, key string, n int) int {
	k := 0
	for range n {
		if ok, _ := l.AllowClient(key); ok {
			k++
		}
	}
	return k
}

// G-2, G-32, G-35: a bucket grants Burst requests at once, then refuses
// with the time until the next token, and refills at PerSecond.
func TestBurstAndRefill(t *testing.T) {
	c := newClock()
	l := client(t, 2, 5, 100, c.Now)
	if got := allowed(l, "a", 5); got != 5 {
		t.Fatalf("burst: %d of 5 allowed", got)
	}
	ok, wait := l.AllowClient("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("after the burst: Allow = %v, %v; want false, 500ms", ok, wait)
	}
	c.Advance(250 * time.Millisecond)
	if ok, wait := l.AllowClient("a"); ok || wait != 250*time.Millisecond {
		t.Fatalf("half a token later: Allow = %v, %v; want false, 250ms", ok, wait)
	}
	c.Advance(250 * time.Millisecond)
	if ok, _ := l.AllowClient("a"); !ok {
		t.Fatal("a token later: refused")
	}
	// A long idle time refills to Burst, never beyond.
	c.Advance(time.Hour)
	if got := allowed(l, "a", 10); got != 5 {
		t.Fatalf("after an hour: %d of 10 allowed, want 5", got)
	}
	// Other keys have their own buckets.
	if got := allowed(l, "b", 5); got != 5 {
		t.Fatalf("key b: %d of 5 allowed", got)
	}
}

// A clock going backwards neither refills nor breaks a bucket.
func TestClockBackwards(t *testing.T) {
	c := newClock()
	l := client(t, 1, 1, 100, c.Now)
	if ok, _ := l.AllowClient("a"); !ok {
		t.Fatal("first call refused")
	}
	c.Advance(-time.Hour)
	if ok, _ := l.AllowClient("a"); ok {
		t.Fatal("allowed after the clock went back")
	}
	c.Advance(time.Hour + time.Second)
	if ok, _ := l.AllowClient("a"); !ok {
		t.Fatal("refused a second after the original time")
	}
}

func TestNewConfig(t *testing.T) {
	def := Limit{Client: Rate{PerSecond: 10, Burst: 100}, Overall: Rate{PerSecond: 50}}
	bad := []struct {
		name string
		lim  Limit
		want string
	}{
		{"NaN", Limit{Client: Rate{PerSecond: math.NaN()}}, "Client.PerSecond must be a finite number"},
		{"Inf", Limit{Overall: Rate{PerSecond: math.Inf(1)}}, "Overall.PerSecond must be a finite number"},
		{"negative burst", Limit{Client: Rate{Burst: -1}}, "Client.Burst must not be negative"},
		{"level the endpoint lacks", Limit{Domain: Rate{PerSecond: 1}}, "Domain does not apply to this endpoint"},
		{"a burst at a level the endpoint lacks", Limit{User: Rate{Burst: 3}}, "User does not apply to this endpoint"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.lim, def, 10, nil); err == nil || err.Error() != tt.want {
				t.Errorf("New = %v, want %q", err, tt.want)
			}
		})
	}
	// Defaults fill zero fields; a rate without a burst gets a second's
	// worth (Overall: 50); a negative rate turns a level off.
	c := newClock()
	l, err := New(Limit{Client: Rate{Burst: 3}}, def, 1000, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got := allowed(l, "a", 10); got != 3 {
		t.Errorf("Client burst 3: %d of 10 allowed", got)
	}
	n := 0
	for i := range 100 {
		if ok, _ := l.AllowClient(fmt.Sprintf("c%d", i)); ok {
			n++
		}
	}
	if got := n; got != 47 {
		t.Errorf("Overall default burst of 50 (3 used): %d of 100 allowed, want 47", got)
	}
	// Turning off a level the endpoint lacks is allowed: one "off" value
	// fits every endpoint.
	off, err := New(Limit{Client: Rate{PerSecond: -1}, Domain: Rate{PerSecond: -1}, Overall: Rate{PerSecond: -1}}, def, 10, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got := allowed(off, "a", 1000); got != 1000 {
		t.Errorf("every level off: %d of 1000 allowed", got)
	}
	// A nil Limiter allows everything (an endpoint whose limits are off).
	var none *Limiter
	if ok, _ := none.AllowClient("a"); !ok {
		t.Error("nil Limiter refused")
	}
	if ok, _ := none.AllowUser("a@b.test"); !ok {
		t.Error("nil Limiter refused a user")
	}
	// burst and maxKeys below their minimum are raised to it.
	if got := allowed(client(t, 1, 0, 0, c.Now), "a", 3); got != 1 {
		t.Errorf("rate 1, burst 0: %d of 3 allowed, want 1", got)
	}
}

// Issue #14 finding 3: rotating /64s inside one /48 (or addresses inside
// one IPv4 /24) is one Network budget; another network is unaffected, and
// a request refused by one level takes nothing from the others.
func TestNetworkLevel(t *testing.T) {
	c := newClock()
	lim := Limit{Client: Rate{PerSecond: 1, Burst: 10}, Network: Rate{PerSecond: 1, Burst: 30}, Overall: Rate{PerSecond: 1, Burst: 1000}}
	l, err := New(lim, lim, 100_000, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range 1000 {
		if ok, _ := l.AllowClient(fmt.Sprintf("2001:db8:7:%x::1", i)); ok {
			n++
		}
	}
	if n != 30 {
		t.Errorf("1000 /64s of one /48: %d allowed, want the network burst of 30", n)
	}
	if got := allowed(l, "2001:db8:8::1", 20); got != 10 {
		t.Errorf("another /48: %d of 20 allowed, want its client burst of 10", got)
	}
	n = 0
	for i := range 256 {
		if ok, _ := l.AllowClient(fmt.Sprintf("198.51.100.%d", i)); ok {
			n++
		}
	}
	if n != 30 {
		t.Errorf("256 addresses of one /24: %d allowed, want 30", n)
	}
	// Refused requests were refunded at the Overall level: 30+10+30 used.
	if got := allowed(l, "192.0.2.1", 10); got != 10 {
		t.Errorf("fresh network: %d of 10 allowed", got)
	}
	if got := l.overall.b.tokens; got != 1000-80 {
		t.Errorf("Overall bucket holds %v tokens, want %d: refused requests were charged", got, 1000-80)
	}
}

// The User and Domain levels: one mailbox however spelled, and fresh
// mailboxes of one domain share the domain's budget.
func TestUserLevels(t *testing.T) {
	c := newClock()
	lim := Limit{User: Rate{PerSecond: 1, Burst: 2}, Domain: Rate{PerSecond: 1, Burst: 5}}
	l, err := New(lim, lim, 100, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range []string{"alex@corp.test", "ALEX@Corp.Test."} {
		if ok, _ := l.AllowUser(e); !ok {
			t.Fatalf("request %d for alex refused", i)
		}
	}
	if ok, _ := l.AllowUser("Alex@CORP.test"); ok {
		t.Fatal("a third request for one mailbox passed (burst 2)")
	}
	n := 0
	for i := range 20 {
		if ok, _ := l.AllowUser(fmt.Sprintf("u%d@corp.test", i)); ok {
			n++
		}
	}
	if n != 3 {
		t.Errorf("fresh mailboxes of corp.test: %d allowed, want the rest of the domain's 5", n)
	}
	if ok, _ := l.AllowUser("sam@other.test"); !ok {
		t.Error("another domain refused")
	}
	// Not an address: charged as written, never a panic.
	for _, e := range []string{"", "@", "no-at", "a@", strings.Repeat("x", 1000)} {
		l.AllowUser(e)
	}
}

// A key of any length costs a table at most maxKeyLen bytes, and two long
// keys still have their own buckets.
func TestLongKeys(t *testing.T) {
	long := strings.Repeat("k", 1<<20)
	for _, k := range []string{long, long + "@" + long, "a@" + long} {
		u, d := userKeys(k)
		c, n := bounded(k), bounded(k) // what AllowClient charges a key that is no address
		for _, got := range []string{u, d, c, n} {
			if len(got) > maxKeyLen {
				t.Fatalf("a key of %d bytes kept as %d bytes", len(k), len(got))
			}
		}
	}
	l := client(t, 1, 1, 100, newClock().Now)
	if ok, _ := l.AllowClient(long + "a"); !ok {
		t.Fatal("first long key refused")
	}
	if ok, _ := l.AllowClient(long + "b"); !ok {
		t.Fatal("a second long key shares the first one's bucket")
	}
	if ok, _ := l.AllowClient(long + "a"); ok {
		t.Fatal("the first long key got a second token")
	}
}

// Issue #14 finding 3: the table never fails open. One key with burst 100
// sends 300 requests, 100 at a time, while 20,000 other keys churn through
// a 10,000-key table between its rounds, on a frozen clock: the key gets
// its burst and no more. (The LRU table before dropped its empty bucket
// and gave it a full one each round: 300 of 300.)
func TestNeverFailsOpen(t *testing.T) {
	c := newClock()
	l := client(t, 1, 100, 10_000, c.Now)
	got, churn := 0, 0
	for round := range 3 {
		for range 100 {
			if ok, _ := l.AllowClient("attacker"); ok {
				got++
			}
		}
		if round == 2 {
			break
		}
		for range 10_000 {
			l.AllowClient(fmt.Sprintf("churn%d", churn))
			churn++
		}
	}
	if got > 100 {
		t.Errorf("the key got %d of 300 with burst 100 while %d keys churned", got, churn)
	}
	if n := l.Len(); n > 10_000 {
		t.Errorf("Len = %d > 10,000", n)
	}
	// With time the key refills, and only as fast as its rate.
	c.Advance(10 * time.Second)
	if n := allowed(l, "attacker", 100); n != 10 {
		t.Errorf("10 s later: %d allowed, want 10", n)
	}
}

// Buckets that have refilled are dropped for newcomers (they carry no
// state); while none has, newcomers share one overflow bucket.
func TestEvictionOnlyFull(t *testing.T) {
	c := newClock()
	const maxKeys = 1000
	l := client(t, 1, 2, maxKeys, c.Now)
	for i := range maxKeys * 2 {
		l.AllowClient(fmt.Sprintf("k%d", i))
	}
	if n := l.Len(); n > maxKeys || n < maxKeys*9/10 {
		t.Fatalf("Len = %d, want at most %d (and most of it used)", n, maxKeys)
	}
	// The table is full of half-empty buckets: a newcomer shares the
	// overflow bucket, already drained by the second thousand.
	if ok, _ := l.AllowClient("new"); ok {
		t.Error("a newcomer got a fresh bucket while the table held state")
	}
	// Two seconds later every bucket is full again: newcomers get their
	// own, and memory stays bounded under 100,000 of them.
	c.Advance(2 * time.Second)
	for i := range 100_000 {
		if ok, _ := l.AllowClient(fmt.Sprintf("fresh%d", i)); !ok && i < maxKeys/2 {
			t.Fatalf("newcomer %d refused although refilled buckets could be dropped", i)
		}
		if i%10_000 == 0 && l.Len() > maxKeys {
			t.Fatalf("after %d keys: Len = %d > %d", i+1, l.Len(), maxKeys)
		}
	}
}

// Under -race: concurrent callers on shared and distinct keys never get
// more than Burst tokens from one frozen-clock bucket, at any level.
func TestConcurrent(t *testing.T) {
	c := newClock()
	lim := Limit{Client: Rate{PerSecond: 1, Burst: 100}, Network: Rate{PerSecond: 1, Burst: 1000}, Overall: Rate{PerSecond: 1, Burst: 1500}}
	l, err := New(lim, lim, 64, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	var shared, all atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				if ok, _ := l.AllowClient("192.0.2.1"); ok {
					shared.Add(1)
					all.Add(1)
				}
				if ok, _ := l.AllowClient(fmt.Sprintf("10.%d.%d.1", g, i)); ok {
					all.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			c.Advance(0)
			_ = l.Len()
		}
	})
	wg.Wait()
	if n := shared.Load(); n != 100 {
		t.Fatalf("shared key: %d allowed, want exactly the burst of 100", n)
	}
	if n := all.Load(); n > 1500 {
		t.Fatalf("%d allowed in all, more than the Overall burst of 1500", n)
	}
	if l.Len() > 3*64 {
		t.Fatalf("Len = %d > %d", l.Len(), 3*64)
	}
}

func TestClientAddr(t *testing.T) {
	tests := []struct{ remote, want, client, network string }{
		{"192.0.2.1:1234", "192.0.2.1", "192.0.2.1/32", "192.0.2.0/24"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", "2001:db8:1::/48"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2:ffff::1", "2001:db8:1:2::/64", "2001:db8:1::/48"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1", "192.0.2.1/32", "192.0.2.0/24"},
		{"[fe80::1%eth0]:80", "fe80::1", "fe80::/64", "fe80::/48"},
		{"192.0.2.7", "192.0.2.7", "192.0.2.7/32", "192.0.2.0/24"},
		{"@", "@", "", ""},
	}
	// keyOf is the set of addresses a key stands for, from the prefix the
	// key bytes encode.
	keyOf := func(k string) string {
		switch {
		case len(k) == 6 && k[:2] == "\x00\x04":
			return netip.PrefixFrom(netip.AddrFrom4([4]byte([]byte(k[2:]))), 32).String()
		case len(k) == 5 && k[:2] == "\x00\x04":
			return netip.PrefixFrom(netip.AddrFrom4([4]byte(append([]byte(k[2:]), 0))), 24).String()
		case len(k) == 10 && k[:2] == "\x00\x06":
			var b [16]byte
			copy(b[:], k[2:])
			return netip.PrefixFrom(netip.AddrFrom16(b), 64).String()
		case len(k) == 8 && k[:2] == "\x00\x06":
			var b [16]byte
			copy(b[:], k[2:])
			return netip.PrefixFrom(netip.AddrFrom16(b), 48).String()
		}
		return ""
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			got := ClientAddr(r)
			if got != tt.want {
				t.Errorf("ClientAddr(%q) = %q, want %q", tt.remote, got, tt.want)
			}
			c, n := got, got
			if ip, err := netip.ParseAddr(got); err == nil {
				var buf [10]byte
				cb, nb := addrKeys(ip, &buf)
				c, n = string(cb), string(nb)
			}
			if keyOf(c) != tt.client || keyOf(n) != tt.network {
				t.Errorf("addrKeys(%q) stand for %q, %q; want %q, %q", got, keyOf(c), keyOf(n), tt.client, tt.network)
			}
			if tt.client == "" && (c != got || n != got) {
				t.Errorf("addrKeys(%q) = %q, %q; want the key itself at both levels", got, c, n)
			}
		})
	}
}

// A-STAT-5, A-ISS-12, S-SCOPE-7, G-18: 429, Retry-After in whole seconds
// (rounded up), the rate_limited error body.
func TestDeny(t *testing.T) {
	for _, tt := range []struct {
		wait time.Duration
		want string
	}{{time.Nanosecond, "1"}, {time.Second, "1"}, {1500 * time.Millisecond, "2"}, {time.Minute, "60"}} {
		t.Run(tt.wait.String(), func(t *testing.T) {
			w := httptest.NewRecorder()
			Deny(w, httptest.NewRequest("GET", "/", nil), tt.wait, nil, "test")
			if w.Code != http.StatusTooManyRequests {
				t.Errorf("status %d, want 429", w.Code)
			}
			if got := w.Header().Get("Retry-After"); got != tt.want {
				t.Errorf("Retry-After %q, want %q", got, tt.want)
			}
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != "rate_limited" || body.Error.Message == "" {
				t.Errorf("body %s (%v), want a rate_limited error", w.Body, err)
			}
		})
	}
}

func BenchmarkAllow(b *testing.B) {
	l := client(b, 1e9, 1<<30, 10000, nil)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("192.0.2.%d", i)
	}
	b.Run("one-key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l.AllowClient("192.0.2.1")
		}
	})
	b.Run("parallel-1000-keys", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				l.AllowClient(keys[i%len(keys)])
				i++
			}
		})
	})
	b.Run("parallel-fresh-keys-evicting", func(b *testing.B) {
		small := client(b, 1, 1, 1000, nil)
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				small.AllowClient(strconv.FormatInt(n.Add(1), 10))
			}
		})
	})
}

// floodMinute simulates the review's scenario for a minute: five attackers
// in three /24s retry every 2 ms, while an honest client in a fourth /24
// polls every 100 ms, last in each round. It returns how many of the
// honest client's 600 requests passed and how many of the attackers'.
func floodMinute(t *testing.T, lim Limit) (honest, attackers int) {
	t.Helper()
	c := newClock()
	l, err := New(lim, lim, 10_000, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	attack := []string{"203.0.113.1", "203.0.113.2", "198.51.100.1", "198.51.100.2", "192.0.2.1"}
	const step = 2 * time.Millisecond
	for i := range int(time.Minute / step) {
		for _, a := range attack {
			if ok, _ := l.AllowClient(a); ok {
				attackers++
			}
		}
		if i%int(100*time.Millisecond/step) == 0 {
			if ok, _ := l.AllowClient("100.64.7.1"); ok {
				honest++
			}
		}
		c.Advance(step)
	}
	return honest, attackers
}

// TestOverallFairShare (review Low 2): five addresses retrying at Overall
// (where a refusal used to be free) took the whole Overall level, and an
// honest client polling every 100 ms passed 1 of 600 times a minute.
// Refused attempts now cost their sender, and each network's share of the
// Overall level is 1/8 of its rate while others wait.
func TestOverallFairShare(t *testing.T) {
	old := Limit{ // the issuance defaults of the review: Overall = 5 × Client
		Client:  Rate{PerSecond: 10, Burst: 100},
		Network: Rate{PerSecond: 20, Burst: 200},
		Overall: Rate{PerSecond: 50, Burst: 500},
	}
	honest, attackers := floodMinute(t, old)
	t.Logf("Overall 50/s: honest %d of 600, attackers %d", honest, attackers)
	// Four networks are within the eight the share protects: the honest
	// one gets at least its share, 50/8 a second, over the minute.
	if want := int(60 * 50.0 / fairShares); honest < want {
		t.Errorf("Overall 50/s: the honest client passed %d of 600 times, want at least its share of %d", honest, want)
	}
	if total := honest + attackers; total > 60*50+500 {
		t.Errorf("%d passed in a minute, more than the Overall level allows", total)
	}

	// With Overall at ten clients' worth (the issuance default now), the
	// honest client's 10 a second is within its share: it is refused only
	// while the attackers' bursts drain the bucket at the start.
	now := old
	now.Overall = Rate{PerSecond: 100, Burst: 1000}
	honest, attackers = floodMinute(t, now)
	t.Logf("Overall 100/s: honest %d of 600, attackers %d", honest, attackers)
	if honest < 590 {
		t.Errorf("Overall 100/s: the honest client passed %d of 600 times, want at least 590", honest)
	}
}

// TestOverallAloneNotShared: a network alone may use the whole Overall
// level; its share applies only while another network is waiting.
func TestOverallAloneNotShared(t *testing.T) {
	c := newClock()
	lim := Limit{Client: Rate{PerSecond: -1}, Network: Rate{PerSecond: -1}, Overall: Rate{PerSecond: 1, Burst: 160}}
	l, err := New(lim, lim, 100, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got := allowed(l, "192.0.2.1", 200); got != 160 {
		t.Errorf("one network alone: %d of 200 allowed, want the Overall burst of 160", got)
	}
	c.Advance(time.Hour) // refilled, and nobody else has been seen for long
	// Two networks alternating: past half the bucket, each gets only its
	// share burst (160/16 = 10) besides what it took before.
	a, b := 0, 0
	for range 200 {
		if ok, _ := l.AllowClient("192.0.2.1"); ok {
			a++
		}
		if ok, _ := l.AllowClient("198.51.100.1"); ok {
			b++
		}
	}
	if a != b || a+b > 80+2*10 || a+b < 80 {
		t.Errorf("two networks: %d and %d allowed, want an equal split of at most half the burst plus two shares", a, b)
	}
}

// Every refusal is counted in agentpass.rate_limited with its endpoint, in
// Deny, the one place a role refuses for rate.
func TestDenyCounts(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	tel, err := telemetry.New("service", nil, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		Deny(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil), time.Second, tel, "redeem")
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var got int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "agentpass.rate_limited" {
				for _, p := range d.DataPoints {
					if v, _ := p.Attributes.Value(telemetry.KeyEndpoint); v.AsString() == "redeem" {
						got += p.Value
					}
				}
			}
		}
	}
	if got != 3 {
		t.Fatalf("agentpass.rate_limited{endpoint=redeem} = %d, want 3", got)
	}
}

// AllowPeer charges the bucket AllowClient(ClientAddr(r)) charges, at
// every level, and allocates nothing for an address already known: it is
// the path of every request a flood sends.
func TestAllowPeer(t *testing.T) {
	lim := Limit{Client: Rate{PerSecond: 1, Burst: 1}, Network: Rate{PerSecond: 1, Burst: 2}, Overall: Rate{PerSecond: 1, Burst: 100}}
	for _, tt := range []struct{ remote, same, sameNet string }{
		{"192.0.2.1:1234", "192.0.2.1", "192.0.2.77"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1", "192.0.2.77"},
		{"[2001:db8:1:2::1]:443", "2001:db8:1:2::99", "2001:db8:1:3::1"},
		{"[fe80::1%eth0]:80", "fe80::1", "fe80::2:0:0:0:1"},
		{"@", "@", "@"},
	} {
		t.Run(tt.remote, func(t *testing.T) {
			l, err := New(lim, lim, 100, newClock().Now)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.RemoteAddr = tt.remote
			if ok, _ := l.AllowPeer(r); !ok {
				t.Fatal("first request refused")
			}
			if ok, _ := l.AllowClient(tt.same); ok {
				t.Errorf("AllowClient(%q) got a token AllowPeer took", tt.same)
			}
			if tt.same == tt.sameNet {
				return
			}
			if ok, _ := l.AllowClient(tt.sameNet); !ok {
				t.Errorf("AllowClient(%q), another client of the network, refused", tt.sameNet)
			}
			if ok, _ := l.AllowPeer(r); ok {
				t.Error("AllowPeer past the network's burst allowed")
			}
		})
	}
	l := client(t, 1, 1, 100, newClock().Now)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.RemoteAddr = "[2001:db8::1]:443"
	l.AllowPeer(r)
	if n := testing.AllocsPerRun(100, func() { l.AllowPeer(r) }); n != 0 {
		t.Errorf("AllowPeer allocates %v times per refusal, want 0", n)
	}
	w := &headerOnly{h: http.Header{}}
	if n := testing.AllocsPerRun(100, func() { clear(w.h); Deny(w, r, time.Second, nil, "test") }); n != 0 {
		t.Errorf("Deny allocates %v times, want 0", n)
	}
}

// headerOnly is a ResponseWriter that keeps nothing but its header map.
type headerOnly struct{ h http.Header }

func (w *headerOnly) Header() http.Header         { return w.h }
func (w *headerOnly) WriteHeader(int)             {}
func (w *headerOnly) Write(b []byte) (int, error) { return len(b), nil }
