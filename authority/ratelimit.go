package authority

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/internal/ratelimit"
	"github.com/agentpass-go/agentpass/pass"
)

// RateLimit is how fast one client (or one user) may call an
// unauthenticated endpoint: a token bucket holding Burst requests, refilled
// at PerSecond requests a second. A refused request is answered 429
// rate_limited with a Retry-After header and has no other effect. The zero
// value means the endpoint's default; a negative PerSecond turns the limit
// off.
type RateLimit struct {
	// PerSecond is the sustained rate. If zero, the endpoint's default;
	// negative: no limit.
	PerSecond float64
	// Burst is how many requests may come at once after a quiet period. If
	// zero, the endpoint's default; it must not be negative.
	Burst int
}

// RateLimits bounds the Authority's unauthenticated endpoints per client
// (G-2, G-32; A-ISS-12, A-STAT-5). The endpoints the Services call with an
// assertion (validate, authorization check and close) are never limited:
// replicated Services and their load rightly call them at any rate. The
// defaults are far above what a busy Harness needs (it polls at most every
// 250 ms per request, and by default every PollAfter): they stop floods,
// not users. Limits use Config.Now, so a frozen test clock never refills a
// bucket: tests that send more requests than a burst configure more.
type RateLimits struct {
	// Issuance limits POST issuance per client (Key). If zero, 10 a second
	// with bursts of 100.
	Issuance RateLimit

	// IssuancePerUser limits POST issuance per user.email (G-32), whoever
	// sends it, so no one can flood a person with approval requests from
	// many addresses. A flood for one user also delays that user's own
	// Harnesses (which wait out the 429): the default is generous for that
	// reason. If zero, 2 a second with bursts of 100.
	IssuancePerUser RateLimit

	// Status limits GET issuance status per client (G-2). If zero, 50 a
	// second with bursts of 250.
	Status RateLimit

	// Key returns the client a request counts against. If nil, the IP
	// address of r.RemoteAddr (an IPv6 address by its /64 prefix).
	// Deployments behind a reverse proxy or load balancer MUST set it (for
	// example to the address the proxy puts in a header it controls):
	// otherwise every request counts against the proxy's address and all
	// clients share one budget. Requests with the same key, including "",
	// share one budget.
	Key func(r *http.Request) string

	// MaxKeys bounds how many clients (and users) each limit remembers; the
	// least recently seen are forgotten first. If zero, 10,000; it must not
	// be negative.
	MaxKeys int
}

// Defaults of RateLimits.
var (
	defaultIssuanceLimit = RateLimit{PerSecond: 10, Burst: 100}
	defaultUserLimit     = RateLimit{PerSecond: 2, Burst: 100}
	defaultStatusLimit   = RateLimit{PerSecond: 50, Burst: 250}
)

const defaultRateLimitKeys = 10_000

// limiters are the rate limiters of an Authority; a nil limiter is off.
type limiters struct {
	issuance, user, status *ratelimit.Limiter
	key                    func(*http.Request) string
}

func newLimiters(rl RateLimits, now func() time.Time) (limiters, error) {
	if rl.MaxKeys < 0 {
		return limiters{}, fmt.Errorf("%w: RateLimits.MaxKeys must not be negative", ErrInvalidConfig)
	}
	maxKeys := rl.MaxKeys
	if maxKeys == 0 {
		maxKeys = defaultRateLimitKeys
	}
	l := limiters{key: rl.Key}
	if l.key == nil {
		l.key = ratelimit.ClientIP
	}
	var err error
	for _, f := range []struct {
		name string
		v, d RateLimit
		dst  **ratelimit.Limiter
	}{
		{"Issuance", rl.Issuance, defaultIssuanceLimit, &l.issuance},
		{"IssuancePerUser", rl.IssuancePerUser, defaultUserLimit, &l.user},
		{"Status", rl.Status, defaultStatusLimit, &l.status},
	} {
		if *f.dst, err = f.v.limiter(f.name, f.d, maxKeys, now); err != nil {
			return limiters{}, err
		}
	}
	return l, nil
}

// limiter returns the limiter of r, nil when it is off.
func (r RateLimit) limiter(name string, def RateLimit, maxKeys int, now func() time.Time) (*ratelimit.Limiter, error) {
	switch {
	case math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0):
		return nil, fmt.Errorf("%w: RateLimits.%s.PerSecond must be a finite number", ErrInvalidConfig, name)
	case r.Burst < 0:
		return nil, fmt.Errorf("%w: RateLimits.%s.Burst must not be negative", ErrInvalidConfig, name)
	case r.PerSecond < 0:
		return nil, nil
	}
	if r.PerSecond == 0 {
		r.PerSecond = def.PerSecond
	}
	if r.Burst == 0 {
		r.Burst = def.Burst
	}
	return ratelimit.New(r.PerSecond, r.Burst, maxKeys, now), nil
}

// allow takes a token from l for key, or answers 429 and returns false
// (A-ISS-12, A-STAT-5). A nil l allows everything.
func (a *Authority) allow(w http.ResponseWriter, l *ratelimit.Limiter, endpoint, key string) bool {
	if l == nil {
		return true
	}
	ok, wait := l.Allow(key)
	if !ok {
		// Debug only: under a flood, one log line per refusal would
		// amplify it. The key is an address or an e-mail, never a secret.
		a.log.Debug("agentpass rate limited", "endpoint", endpoint, "outcome", "rejected", "code", string(pass.CodeRateLimited))
		ratelimit.Deny(w, wait)
	}
	return ok
}

// userKey is the IssuancePerUser key of an e-mail address: one mailbox is
// one key however its domain or local part is spelled (G-25).
func userKey(email string) string {
	local, domain, err := pass.SplitEmail(email)
	if err != nil {
		return strings.ToLower(email)
	}
	return strings.ToLower(local) + "@" + domain
}
