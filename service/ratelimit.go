package service

import (
	"math"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/internal/ratelimit"
)

// RateLimit is how fast one client may call an unauthenticated endpoint: a
// token bucket holding Burst requests, refilled at PerSecond requests a
// second. A refused request is answered 429 rate_limited with a
// Retry-After header and has no other effect. The zero value means the
// endpoint's default; a negative PerSecond turns the limit off.
type RateLimit struct {
	// PerSecond is the sustained rate. If zero, the endpoint's default;
	// negative: no limit.
	PerSecond float64
	// Burst is how many requests may come at once after a quiet period. If
	// zero, the endpoint's default; it must not be negative.
	Burst int
}

// RateLimits bounds the Service's endpoints per client (G-35; S-SCOPE-7's
// 429). Available scopes (called by Authorities with an assertion), the
// configuration and the JWKS (static, cacheable) are never limited. The
// defaults are far above what a busy Harness or browser needs: they stop
// floods, not users. Limits use Config.Now, so a frozen test clock never
// refills a bucket: tests that send more requests than a burst configure
// more.
type RateLimits struct {
	// Resolve limits POST resolve-authorities, the unauthenticated oracle
	// on which users have an Enterprise Authority (G-35). If zero, 10 a
	// second with bursts of 100.
	Resolve RateLimit

	// Initialize limits the browser initialization endpoint (GET, POST and
	// HEAD). A refused request does not use its initialization token. If
	// zero, 10 a second with bursts of 100.
	Initialize RateLimit

	// Redeem limits both redemption endpoints. If zero, NO limit: a
	// redemption needs a pass, a refused one would cost the Harness its
	// pass's short lifetime, and a redeeming client (a harness fleet, a
	// gateway, a load test) legitimately sends them back to back. Each
	// redemption makes at most one validate call, to a trusted Authority
	// only; set a limit (for example 20 a second, bursts of 200) to bound
	// how fast one client can make the Service call them.
	Redeem RateLimit

	// Key returns the client a request counts against. If nil, the IP
	// address of r.RemoteAddr (an IPv6 address by its /64 prefix).
	// Deployments behind a reverse proxy or load balancer MUST set it (for
	// example to the address the proxy puts in a header it controls):
	// otherwise every request counts against the proxy's address and all
	// clients share one budget. Requests with the same key, including "",
	// share one budget.
	Key func(r *http.Request) string

	// MaxKeys bounds how many clients each limit remembers; the least
	// recently seen are forgotten first. If zero, 10,000; it must not be
	// negative.
	MaxKeys int
}

const defaultRateLimitKeys = 10_000

// limiters are the rate limiters of a Service; a nil limiter is off.
type limiters struct {
	resolve, initialize, redeem *ratelimit.Limiter
	key                         func(*http.Request) string
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
	if l.key == nil {
		l.key = ratelimit.ClientIP
	}
	for _, f := range []struct {
		name string
		v, d RateLimit
		dst  **ratelimit.Limiter
	}{
		{"Resolve", rl.Resolve, RateLimit{PerSecond: 10, Burst: 100}, &l.resolve},
		{"Initialize", rl.Initialize, RateLimit{PerSecond: 10, Burst: 100}, &l.initialize},
		{"Redeem", rl.Redeem, RateLimit{}, &l.redeem},
	} {
		r := f.v
		switch {
		case math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0):
			return limiters{}, errConfig("RateLimits.%s.PerSecond must be a finite number", f.name)
		case r.Burst < 0:
			return limiters{}, errConfig("RateLimits.%s.Burst must not be negative", f.name)
		case r.PerSecond < 0:
			continue
		}
		if r.PerSecond == 0 {
			r.PerSecond = f.d.PerSecond
		}
		if r.PerSecond == 0 { // no default: off
			continue
		}
		if r.Burst == 0 {
			r.Burst = f.d.Burst
		}
		if r.Burst == 0 { // a rate without a default burst: a second's worth
			r.Burst = max(1, int(math.Ceil(r.PerSecond)))
		}
		*f.dst = ratelimit.New(r.PerSecond, r.Burst, maxKeys, now)
	}
	return l, nil
}

// limited wraps h with limiter l (nil: h itself): a client over the limit
// gets 429 rate_limited with Retry-After before h runs, so the request has
// no effect (G-35, S-SCOPE-7).
func (s *Service) limited(l *ratelimit.Limiter, endpoint string, h http.HandlerFunc) http.HandlerFunc {
	if l == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := l.Allow(s.limits.key(r)); !ok {
			// Debug only: under a flood, one log line per refusal would
			// amplify it.
			s.cfg.Logger.Debug("agentpass rate limited", "endpoint", endpoint, "outcome", "rejected")
			ratelimit.Deny(w, wait)
			return
		}
		h(w, r)
	}
}
