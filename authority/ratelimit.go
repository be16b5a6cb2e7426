package authority

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/internal/ratelimit"
	"github.com/agentpass-go/agentpass/pass"
)

// RateLimit is how fast an endpoint may be called, at every level a
// request is charged to: Client (one IPv6 /64 or IPv4 address, or the
// value of RateLimits.Key), Network (its IPv6 /48 or IPv4 /24), User (one
// mailbox) and Domain (the user's e-mail domain) where the endpoint names
// a user, and Overall (everyone). A request passes only if every level
// allows it; a refused one is answered 429 rate_limited with a Retry-After
// header and has no other effect, except that one refused at Overall still
// counts against its Client and Network, so retrying in a loop gains
// nothing. A zero [Rate] is the level's default, a negative PerSecond turns
// the level off.
//
// It is the same type as service.RateLimit: the limiter lives once, in an
// internal package both roles use, and the alias lets each role's Config
// name it without one role importing the other.
type RateLimit = ratelimit.Limit

// Rate is one level of a [RateLimit]: a token bucket holding Burst
// requests, refilled at PerSecond requests a second.
type Rate = ratelimit.Rate

// RateLimits bounds the Authority's endpoints before anyone is
// authenticated. The issuance and status defaults are far above what a busy
// Harness needs (it polls at most every 250 ms per request, and by default
// every PollAfter); the Services defaults are far above what replicated
// Services need from a few addresses. They stop floods, not users. Limits
// use Config.Now, so a frozen test clock never refills a bucket: tests that
// send more requests than a burst configure more.
//
// # Why the defaults cannot fill a MemoryStore
//
// Every stored request passed the Issuance limit, and a pending request
// lives RequestTTL. With the default RequestTTL (10 min), all networks
// together can keep at most 100/s × 600 s + 1,000 = 61,000 requests pending,
// one /48 (or /24) at most 20/s × 600 s + 200 = 12,200, and one e-mail
// domain 10/s × 600 s + 200 = 6,200: far below the MemoryStore bound of 100,000
// (100,000), and dead records make room for new ones. A longer RequestTTL
// lowers the default Overall, Network and Domain rates so that these
// products stay the same. Explicit rates are taken as given. An Approver
// that approves without a person lets every request also become an
// authorization once its pass is redeemed, which lives AuthorizationTTL:
// there the approval policy, not the rate limit, must bound what one
// client obtains.
type RateLimits struct {
	// Issuance limits POST issuance. Client, Network and Overall are
	// charged before the body is read, User and Domain (of user.email)
	// before anything is verified or stored, so no one can flood a person
	// or an organisation with approval requests from many addresses. A
	// flood for one user also delays that user's own Harnesses (which wait
	// out the 429): the per-user default is generous for that reason. If
	// zero, per client 10 a second with bursts of 100, per network 20
	// (200), per user 2 (100), per domain 10 (200), overall 100 (1,000):
	// ten clients' worth, and each network's share of it is an eighth while
	// others wait, so a few flooding networks cannot lock everyone out. The
	// network, domain and overall rates are lower for a RequestTTL over 10
	// minutes (see above).
	Issuance RateLimit

	// Status limits GET issuance status. If zero, per client 50 a second
	// with bursts of 250, per network 100 (500), overall 1,000 (5,000).
	Status RateLimit

	// Services limits the endpoints Services call with an assertion
	// (validate, authorization check and close, mission read and report),
	// charged per client, per network and overall before the assertion or
	// proof is parsed: an unsigned token
	// naming a fresh issuer would otherwise cost a DNS query and a fetch
	// each. Replicated Services rightly call these at thousands a second
	// from a few addresses, so the defaults are generous: if zero, per
	// client 2,000 a second with bursts of 4,000, per network 4,000
	// (8,000), overall 20,000 (40,000). Behind a proxy set Key, or every
	// Service shares one client budget.
	Services RateLimit

	// Missions limits the Harness's mission calls (mission read by
	// mission id, complete, stage, delegate): one Harness needs a few a
	// second, and each stage move can queue events for every Service, so
	// these are not given the Services budget. Client, Network and Overall
	// are charged before any proof is parsed (for a mission read, once the
	// body shows the Harness is calling); the Client rate is also charged
	// to the mission, once its holder proof is verified, so a Harness
	// spreading calls over many addresses gains nothing and no one else
	// can spend a mission's budget. If zero, per client and per mission 20
	// a second with bursts of 200, per network 40 (400), overall 1,000
	// (5,000).
	Missions RateLimit

	// Key returns the address a request counts against. If nil, the IP
	// address of r.RemoteAddr. An IP address is charged by its /64 (IPv6)
	// or itself (IPv4) and by its /48 or /24; any other value is one
	// client and its own network. Deployments behind a reverse proxy or
	// load balancer MUST set it (for example to the address the proxy puts
	// in a header it controls): otherwise every request counts against the
	// proxy's address and all clients share one budget.
	Key func(r *http.Request) string

	// MaxKeys bounds how many clients (networks, users, domains) each
	// limit remembers. When a limit is full, only buckets that have
	// refilled are forgotten; newcomers share one bucket until then, so a
	// flood of fresh keys never resets an empty bucket. If zero, 10,000;
	// it must not be negative.
	MaxKeys int
}

const defaultRateLimitKeys = 10_000

// Defaults of RateLimits, for 10 minutes.
var (
	defaultIssuanceLimit = RateLimit{
		Client:  Rate{PerSecond: 10, Burst: 100},
		Network: Rate{PerSecond: 20, Burst: 200},
		User:    Rate{PerSecond: 2, Burst: 100},
		Domain:  Rate{PerSecond: 10, Burst: 200},
		Overall: Rate{PerSecond: 100, Burst: 1000},
	}
	defaultStatusLimit = RateLimit{
		Client:  Rate{PerSecond: 50, Burst: 250},
		Network: Rate{PerSecond: 100, Burst: 500},
		Overall: Rate{PerSecond: 1000, Burst: 5000},
	}
	defaultMissionsLimit = RateLimit{
		Client:  Rate{PerSecond: 20, Burst: 200},
		Network: Rate{PerSecond: 40, Burst: 400},
		Overall: Rate{PerSecond: 1000, Burst: 5000},
	}
	defaultServicesLimit = RateLimit{
		Client:  Rate{PerSecond: 2000, Burst: 4000},
		Network: Rate{PerSecond: 4000, Burst: 8000},
		Overall: Rate{PerSecond: 20000, Burst: 40000},
	}
)

// issuanceDefaults returns the issuance defaults for requests pending
// reqTTL: the rates that fill the store are scaled down so that rate ×
// reqTTL stays what it is at 10 minutes.
func issuanceDefaults(reqTTL time.Duration) RateLimit {
	d := defaultIssuanceLimit
	if reqTTL > defaultRequestTTL {
		f := float64(defaultRequestTTL) / float64(reqTTL)
		for _, r := range []*Rate{&d.Network, &d.Domain, &d.Overall} {
			r.PerSecond = math.Max(r.PerSecond*f, 1e-3)
		}
	}
	return d
}

// limiters are the rate limiters of an Authority.
type limiters struct {
	issuance, status, services, missions *ratelimit.Limiter
	// mission charges Missions.Client to a mission id.
	mission *ratelimit.Limiter
	key     func(*http.Request) string
}

func newLimiters(rl RateLimits, reqTTL time.Duration, now func() time.Time) (limiters, error) {
	if rl.MaxKeys < 0 {
		return limiters{}, fmt.Errorf("%w: RateLimits.MaxKeys must not be negative", ErrInvalidConfig)
	}
	maxKeys := rl.MaxKeys
	if maxKeys == 0 {
		maxKeys = defaultRateLimitKeys
	}
	l := limiters{key: rl.Key}
	if l.key == nil {
		l.key = ratelimit.ClientAddr
	}
	for _, f := range []struct {
		name string
		v, d RateLimit
		dst  **ratelimit.Limiter
	}{
		{"Issuance", rl.Issuance, issuanceDefaults(reqTTL), &l.issuance},
		{"Status", rl.Status, defaultStatusLimit, &l.status},
		{"Services", rl.Services, defaultServicesLimit, &l.services},
		{"Missions", rl.Missions, defaultMissionsLimit, &l.missions},
		{"Missions", RateLimit{Client: rl.Missions.Client}, RateLimit{Client: defaultMissionsLimit.Client}, &l.mission},
	} {
		lim, err := ratelimit.New(f.v, f.d, maxKeys, now)
		if err != nil {
			return limiters{}, fmt.Errorf("%w: RateLimits.%s.%w", ErrInvalidConfig, f.name, err)
		}
		*f.dst = lim
	}
	return l, nil
}

// allowService charges a call of a Service-facing endpoint to
// RateLimits.Services, answering 429 when it is over; callers ask before
// reading the body or parsing any credential.
func (a *Authority) allowService(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	ok, wait := a.limits.services.AllowClient(a.limits.key(r))
	return a.allow(w, r, endpoint, ok, wait)
}

// allowHarness charges a Harness's mission call to RateLimits.Missions by
// client, answering 429 when it is over; callers ask before parsing any
// proof.
func (a *Authority) allowHarness(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	ok, wait := a.limits.missions.AllowClient(a.limits.key(r))
	return a.allow(w, r, endpoint, ok, wait)
}

// allowMission charges an authenticated call about missionID to the
// mission's own budget. Only after the holder proof: charged earlier,
// anyone who learnt a mission id could spend its Harness's budget.
func (a *Authority) allowMission(w http.ResponseWriter, r *http.Request, endpoint, missionID string) bool {
	ok, wait := a.limits.mission.AllowClient(missionKeyPrefix + missionID)
	return a.allow(w, r, endpoint, ok, wait)
}

// missionKeyPrefix keeps a mission id from ever reading as an IP address.
const missionKeyPrefix = "mission:"

// allow reports whether a request may proceed after ok, wait from a
// Limiter, answering 429 when it may not.
func (a *Authority) allow(w http.ResponseWriter, r *http.Request, endpoint string, ok bool, wait time.Duration) bool {
	if !ok {
		// Debug only: under a flood, one log line per refusal would
		// amplify it. Neither key is logged.
		a.log.DebugContext(r.Context(), "agentpass rate limited", "endpoint", endpoint, "outcome", "rejected", "code", string(pass.CodeRateLimited))
		ratelimit.Deny(w, r, wait, a.tel, endpoint)
	}
	return ok
}
