package service

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/agentpass-go/agentpass/internal/ratelimit"
)

// RateLimit is how fast an endpoint may be called, at every level a
// request is charged to: Client (one IPv6 /64 or IPv4 address, or the
// value of RateLimits.Key), Network (its IPv6 /48 or IPv4 /24), User and
// Domain (where an endpoint names a user) and Overall (everyone). A request
// passes only if every level allows it; a refused one is answered 429
// rate_limited with a Retry-After header and has no other effect, except
// that one refused at Overall still counts against its Client and Network,
// so retrying in a loop gains nothing. A zero [Rate] is the level's
// default, a negative PerSecond turns the level off.
//
// It is the same type as authority.RateLimit: the limiter lives once, in
// an internal package both roles use, and the alias lets each role's
// Config name it without one role importing the other.
type RateLimit = ratelimit.Limit

// Rate is one level of a [RateLimit]: a token bucket holding Burst
// requests, refilled at PerSecond requests a second.
type Rate = ratelimit.Rate

// RateLimits bounds the Service's endpoints. The configuration and the
// JWKS (static, cacheable) are never limited; every other endpoint is,
// by default. The defaults are far above what a busy Harness, browser or
// Authority needs: they stop floods, not users. Overall is at least ten
// clients' worth, and while others wait each network gets an eighth of it,
// so a few flooding networks cannot lock everyone out. Limits use Config.Now, so
// a frozen test clock never refills a bucket: tests that send more
// requests than a burst configure more.
type RateLimits struct {
	// Resolve limits POST resolve-authorities, the unauthenticated oracle
	// on which users have an Enterprise Authority. If zero, per client 10 a
	// second with bursts of 100, per network 20 (200), overall 200 (2,000).
	Resolve RateLimit

	// Initialize limits the browser initialization endpoint (GET, POST and
	// HEAD). A refused request does not use its initialization token. If
	// zero, as Resolve.
	Initialize RateLimit

	// Redeem limits both redemption endpoints. Each redemption may make
	// a validate call to an Authority and verify proofs, so a flood of
	// them is work for both. If zero, per client 20 a second with bursts of
	// 200, per network 40 (400), overall 400 (4,000): a refused Harness
	// waits out Retry-After, well within a pass's lifetime.
	Redeem RateLimit

	// AvailableScopes limits POST available-scopes, called by Authorities
	// with an assertion whose check can make the Service fetch the
	// caller's keys. One Authority's issuances arrive at its own rate, so
	// the defaults exceed an Authority's default issuance limits. If zero,
	// per client 50 a second with bursts of 500, per network 100 (1,000),
	// overall 500 (5,000).
	AvailableScopes RateLimit

	// Events limits the event receiver (EventDelivery push), before the
	// body is read: an unauthenticated sender must not make the Service
	// parse or fetch keys at will. An Authority ending a large mission
	// pushes one SET per delegation at once. If zero, per client 100 a
	// second with bursts of 1,000, per network 200 (2,000), overall 1,000
	// (10,000).
	//
	// A SET is charged to its sender's address (or Key), the only thing
	// known of it before it is verified. A flood from other networks
	// costs the honest Authority nothing while at most eight networks
	// flood and it pushes within its share of Overall (an eighth: 125 SETs
	// a second by default). A flood from its own address or network, or
	// from anywhere behind a proxy when Key is unset, shares its budget:
	// its SETs pass only when a token is free as the bucket refills. The
	// Authority retries a refused SET with backoff for a quarter of an
	// hour, and the authorization check, at least every CheckInterval,
	// still ends a revoked delegation: a flood can delay a revocation to
	// the next check, never cancel it.
	Events RateLimit

	// Key returns the address a request counts against. If nil, the IP
	// address of r.RemoteAddr. An IP address is charged by its /64 (IPv6)
	// or itself (IPv4) and by its /48 or /24; any other value is one
	// client and its own network. Deployments behind a reverse proxy or
	// load balancer MUST set it (for example to the address the proxy puts
	// in a header it controls): otherwise every request counts against the
	// proxy's address and all clients share one budget.
	Key func(r *http.Request) string

	// MaxKeys bounds how many clients (and networks) each limit remembers.
	// When a limit is full, only buckets that have refilled are forgotten;
	// newcomers share one bucket until then, so a flood of fresh addresses
	// never resets a client's empty bucket. If zero, 10,000; it must not
	// be negative.
	MaxKeys int
}

const defaultRateLimitKeys = 10_000

// Defaults of RateLimits.
var (
	defaultResolveLimit = RateLimit{
		Client:  Rate{PerSecond: 10, Burst: 100},
		Network: Rate{PerSecond: 20, Burst: 200},
		Overall: Rate{PerSecond: 200, Burst: 2000},
	}
	defaultRedeemLimit = RateLimit{
		Client:  Rate{PerSecond: 20, Burst: 200},
		Network: Rate{PerSecond: 40, Burst: 400},
		Overall: Rate{PerSecond: 400, Burst: 4000},
	}
	defaultEventsLimit = RateLimit{
		Client:  Rate{PerSecond: 100, Burst: 1000},
		Network: Rate{PerSecond: 200, Burst: 2000},
		Overall: Rate{PerSecond: 1000, Burst: 10000},
	}
	defaultScopesLimit = RateLimit{
		Client:  Rate{PerSecond: 50, Burst: 500},
		Network: Rate{PerSecond: 100, Burst: 1000},
		Overall: Rate{PerSecond: 500, Burst: 5000},
	}
)

// limiters are the rate limiters of a Service.
type limiters struct {
	resolve, initialize, redeem, scopes, events *ratelimit.Limiter
	key                                         func(*http.Request) string // nil: the peer address
}

// allow charges r to l, by RateLimits.Key or by the peer address.
func (ls *limiters) allow(l *ratelimit.Limiter, r *http.Request) (bool, time.Duration) {
	if ls.key == nil {
		return l.AllowPeer(r)
	}
	return l.AllowClient(ls.key(r))
}

func newLimiters(rl RateLimits, now func() time.Time) (limiters, error) {
	if rl.MaxKeys < 0 {
		return limiters{}, errConfig("RateLimits.MaxKeys must not be negative")
	}
	maxKeys := rl.MaxKeys
	if maxKeys == 0 {
		maxKeys = defaultRateLimitKeys
	}
	l := limiters{key: rl.Key}
	for _, f := range []struct {
		name string
		v, d RateLimit
		dst  **ratelimit.Limiter
	}{
		{"Resolve", rl.Resolve, defaultResolveLimit, &l.resolve},
		{"Initialize", rl.Initialize, defaultResolveLimit, &l.initialize},
		{"Redeem", rl.Redeem, defaultRedeemLimit, &l.redeem},
		{"AvailableScopes", rl.AvailableScopes, defaultScopesLimit, &l.scopes},
		{"Events", rl.Events, defaultEventsLimit, &l.events},
	} {
		lim, err := ratelimit.New(f.v, f.d, maxKeys, now)
		if err != nil {
			return limiters{}, errConfig("RateLimits.%s.%v", f.name, err)
		}
		*f.dst = lim
	}
	return l, nil
}

// limited wraps h with limiter l: a client over the limit gets 429
// rate_limited with Retry-After before h runs, so the request has no
// effect: its body is not read, and the refusal allocates nothing of its
// own.
func (s *Service) limited(l *ratelimit.Limiter, endpoint string, h http.HandlerFunc) http.HandlerFunc {
	var log refusalLog
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := s.limits.allow(l, r); !ok {
			log.refused(r.Context(), s.cfg.Logger, s.cfg.Now(), endpoint)
			ratelimit.Deny(w, r, wait, s.tel, endpoint)
			return
		}
		h(w, r)
	}
}

// refusalLogEvery is the least time between two log lines of one
// endpoint's refusals.
const refusalLogEvery = time.Minute

// refusalLog logs an endpoint's rate-limit refusals in aggregate: a Warn
// line at the first refusal, then at most one a minute, with how many were
// refused since the line before. One line per refusal would let a flood
// amplify itself into the logs; the exact count is the agentpass.rate_limited
// metric. Refusals after the last line are reported with the next one.
type refusalLog struct {
	count atomic.Int64
	next  atomic.Int64 // Unix nanoseconds before which no line is written
}

func (l *refusalLog) refused(ctx context.Context, logger *slog.Logger, now time.Time, endpoint string) {
	l.count.Add(1)
	next := l.next.Load()
	if now.UnixNano() < next || !l.next.CompareAndSwap(next, now.Add(refusalLogEvery).UnixNano()) {
		return
	}
	logger.LogAttrs(ctx, slog.LevelWarn, "agentpass rate limited", slog.String("endpoint", endpoint),
		slog.Int64("refused", l.count.Swap(0)))
}
