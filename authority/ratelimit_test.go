package authority_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// clientHeader names the client in these tests: RateLimits.Key reads it,
// as a deployment behind a proxy reads the address the proxy forwards.
const clientHeader = "X-Test-Client"

func byHeader(r *http.Request) string { return r.Header.Get(clientHeader) }

func client(name string) http.Header { return http.Header{clientHeader: {name}} }

func limits(rl authority.RateLimits) func(*authority.Config) {
	return func(c *authority.Config) {
		rl.Key = byHeader
		c.RateLimits = rl
	}
}

// off turns every level of an endpoint's limit off.
var off = authority.RateLimit{
	Client: disabled, Network: disabled, User: disabled, Domain: disabled, Overall: disabled,
}

var disabled = authority.Rate{PerSecond: -1}

// only limits an endpoint at its Client level.
func only(r authority.Rate) authority.RateLimit {
	l := off
	l.Client = r
	return l
}

// wantLimited checks a 429 answer: Retry-After in whole seconds and the
// schema-valid rate_limited error body (A-ISS-12, A-STAT-5, G-18).
func wantLimited(t *testing.T, r response, retryAfter string) {
	t.Helper()
	wantError(t, r, http.StatusTooManyRequests, pass.CodeRateLimited)
	if got := r.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
}

func (e *env) pendingCount() int {
	e.t.Helper()
	list, err := e.auth.Pending(ctx, authority.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(list)
}

// G-32, A-ISS-12: issuance per client. Over the burst a client gets 429
// before anything is verified or stored (no request, no OnPending), other
// clients are unaffected, and the bucket refills with time.
func TestRateLimitIssuancePerClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, limits(authority.RateLimits{Issuance: only(authority.Rate{PerSecond: 0.5, Burst: 2}), Status: off}))
	h := e.newHarness()
	post := func(who string) response {
		return e.do(http.MethodPost, e.base+"/requests", h.req, client(who))
	}
	for i := range 2 {
		if r := post("a"); r.status != http.StatusAccepted {
			t.Fatalf("issuance %d: %d %s", i, r.status, r.body)
		}
	}
	wantLimited(t, post("a"), "2")
	// Even a malformed body is refused the same way: the limit comes first.
	wantLimited(t, e.do(http.MethodPost, e.base+"/requests", "{", client("a")), "2")
	if n := e.pendingCount(); n != 2 {
		t.Errorf("%d pending requests after the refusals, want 2", n)
	}
	e.mu.Lock()
	if len(e.pended) != 2 {
		t.Errorf("OnPending called %d times, want 2", len(e.pended))
	}
	e.mu.Unlock()
	if r := post("b"); r.status != http.StatusAccepted {
		t.Fatalf("another client: %d %s", r.status, r.body)
	}
	e.clock.Advance(2 * time.Second)
	if r := post("a"); r.status != http.StatusAccepted {
		t.Fatalf("after refill: %d %s", r.status, r.body)
	}
	wantLimited(t, post("a"), "2")
}

// G-32: issuance per user, whatever the client: a second request for the
// same mailbox (however spelled) is refused from another client too; other
// users are unaffected.
func TestRateLimitIssuancePerUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, limits(authority.RateLimits{Issuance: func() authority.RateLimit {
		l := off
		l.User = authority.Rate{PerSecond: 1, Burst: 1}
		return l
	}(), Status: off}))
	h := e.newHarness()
	if r := e.do(http.MethodPost, e.base+"/requests", h.req, client("a")); r.status != http.StatusAccepted {
		t.Fatalf("first issuance: %d %s", r.status, r.body)
	}
	again := h.req
	again.User.Email = "ALEX@Corp.Test"
	wantLimited(t, e.do(http.MethodPost, e.base+"/requests", again, client("b")), "1")
	if n := e.pendingCount(); n != 1 {
		t.Errorf("%d pending requests, want 1", n)
	}
	other := e.newHarness()
	other.req.User.Email = "sam@corp.test"
	if r := e.do(http.MethodPost, e.base+"/requests", other.req, client("a")); r.status != http.StatusAccepted {
		t.Fatalf("another user: %d %s", r.status, r.body)
	}
}

// G-2, A-STAT-5: status polling per client. A refused poll of an approved
// request has no effect: the holder proof it carried was not even checked
// (it is accepted, not a replay, once the bucket refills) and no pass was
// minted for it.
func TestRateLimitStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll, limits(authority.RateLimits{Status: only(authority.Rate{PerSecond: 1, Burst: 2})}))
	h := e.newHarness()
	r, st := e.issue(h.req)
	if st == nil || st.Status != pass.StatusApproved {
		t.Fatalf("issuance: %d %s", r.status, r.body)
	}
	get := func(who, proof string) response {
		hd := client(who)
		hd.Set(pass.ProofHeader, proof)
		return e.do(http.MethodGet, e.auth.StatusURL(st.ID), nil, hd)
	}
	for i := range 2 {
		if r := get("a", h.statusProof(e, st.ID)); r.status != http.StatusOK {
			t.Fatalf("poll %d: %d %s", i, r.status, r.body)
		}
	}
	proof := h.statusProof(e, st.ID)
	wantLimited(t, get("a", proof), "1")
	// An unknown id is refused the same way: no store lookup, no oracle.
	wantLimited(t, e.do(http.MethodGet, e.auth.StatusURL("req_unknown"), nil, client("a")), "1")
	if r := get("b", h.statusProof(e, st.ID)); r.status != http.StatusOK {
		t.Fatalf("another client: %d %s", r.status, r.body)
	}
	e.clock.Advance(time.Second)
	if r := get("a", proof); r.status != http.StatusOK {
		t.Fatalf("the proof of the refused poll, after refill: %d %s (it was consumed by the refused poll?)", r.status, r.body)
	}
}

// The endpoints Services call with an assertion are never limited, however
// tight the limits: replicated Services and benchmarks call them at any rate.
func TestRateLimitSparesServiceEndpoints(t *testing.T) {
	t.Parallel()
	tiny := authority.Rate{PerSecond: 0.001, Burst: 1}
	e := newEnv(t, limits(authority.RateLimits{
		Issuance: authority.RateLimit{Client: tiny, Network: tiny, User: tiny, Domain: tiny, Overall: tiny},
		Status:   authority.RateLimit{Client: tiny, Network: tiny, Overall: tiny},
	}))
	for i := range 5 {
		r, _ := e.validate(e.svc, "ap_unknown")
		wantError(t, r, http.StatusNotFound, pass.CodeAgentPassInvalid)
		c, _ := e.check(e.svc, "authz_unknown")
		if c.status == http.StatusTooManyRequests {
			t.Fatalf("authorization check %d limited", i)
		}
		x, _ := e.closeAuthz(e.svc, "authz_unknown", pass.CloseRevoke)
		if x.status == http.StatusTooManyRequests {
			t.Fatalf("authorization close %d limited", i)
		}
	}
}

// A negative PerSecond turns a limit off: 300 polls and 150 issuances for
// one user from one client on a frozen clock all pass.
func TestRateLimitDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, limits(authority.RateLimits{Issuance: off, Status: off}))
	h := e.plainHarness()
	for i := range 150 {
		if r := e.do(http.MethodPost, e.base+"/requests", h.req, nil); r.status != http.StatusAccepted {
			t.Fatalf("issuance %d: %d %s", i, r.status, r.body)
		}
	}
	_, st := e.issue(h.req)
	for i := range 300 {
		if r, _ := e.poll(st.ID, ""); r.status != http.StatusOK {
			t.Fatalf("poll %d: %d %s", i, r.status, r.body)
		}
	}
}

// The limits are on by default (per remote IP: every test client is
// 127.0.0.1): on a frozen clock the status burst is 250 and the issuance
// burst 100 per client and per user.
func TestRateLimitDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.plainHarness()
	var id string
	for i := range 100 {
		r := e.do(http.MethodPost, e.base+"/requests", h.req, nil)
		if r.status != http.StatusAccepted {
			t.Fatalf("issuance %d: %d %s", i, r.status, r.body)
		}
		var st pass.IssuanceStatus
		if err := json.Unmarshal(r.body, &st); err != nil || st.ID == "" {
			t.Fatalf("issuance %d: %v %s", i, err, r.body)
		}
		id = st.ID
	}
	wantLimited(t, e.do(http.MethodPost, e.base+"/requests", h.req, nil), "1")
	for i := range 250 {
		if r, _ := e.poll(id, ""); r.status != http.StatusOK {
			t.Fatalf("poll %d: %d %s", i, r.status, r.body)
		}
	}
	r, _ := e.poll(id, "")
	wantLimited(t, r, "1")
}

func TestRateLimitConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rl   authority.RateLimits
	}{
		{"NaN rate", authority.RateLimits{Status: authority.RateLimit{Client: authority.Rate{PerSecond: math.NaN()}}}},
		{"infinite rate", authority.RateLimits{Issuance: authority.RateLimit{Overall: authority.Rate{PerSecond: math.Inf(1)}}}},
		{"negative burst", authority.RateLimits{Issuance: authority.RateLimit{User: authority.Rate{Burst: -1}}}},
		{"status has no user", authority.RateLimits{Status: authority.RateLimit{User: authority.Rate{PerSecond: 1}}}},
		{"negative MaxKeys", authority.RateLimits{MaxKeys: -1}},
	}
	ks, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.New(discovery.Config{Nameservers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := authority.Config{Identifier: authID, TrustMode: pass.TrustFederated, Keys: ks, Discovery: disc}
			cfg.RateLimits = tt.rl
			if _, err := authority.New(cfg); !errors.Is(err, authority.ErrInvalidConfig) {
				t.Errorf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// Issue #14 finding 3: the default issuance rates that fill the store
// (network, domain, overall) scale down with a longer RequestTTL, so that
// rate × RequestTTL, the most requests they let stay pending, is what it
// is at the default TTL. At 100 minutes (ten times the default) the
// network level refills at 2 a second instead of 20.
func TestRateLimitIssuanceScalesWithRequestTTL(t *testing.T) {
	t.Parallel()
	rl := off
	rl.Network = authority.Rate{Burst: 5} // the default rate, a small burst
	e := newEnv(t, limits(authority.RateLimits{Issuance: rl, Status: off}), func(c *authority.Config) { c.RequestTTL = 100 * time.Minute })
	h := e.plainHarness()
	post := func() response { return e.do(http.MethodPost, e.base+"/requests", h.req, client("a")) }
	passed := func(n int) int {
		k := 0
		for range n {
			if r := post(); r.status == http.StatusAccepted {
				k++
			} else if r.status != http.StatusTooManyRequests {
				t.Fatalf("issuance: %d %s", r.status, r.body)
			}
		}
		return k
	}
	if n := passed(6); n != 5 {
		t.Fatalf("burst: %d of 6 passed, want 5", n)
	}
	e.clock.Advance(time.Second)
	if n := passed(6); n != 2 {
		t.Errorf("a second later: %d passed, want 2 (the default 20/s scaled to 100 min)", n)
	}
}

// Issue #14 finding 3: issuance per e-mail domain. Fresh mailboxes of one
// domain from fresh clients share the domain's budget, so choosing the
// e-mail address no longer buys a fresh bucket.
func TestRateLimitIssuancePerDomain(t *testing.T) {
	t.Parallel()
	rl := off
	rl.Domain = authority.Rate{PerSecond: 1, Burst: 1}
	e := newEnv(t, limits(authority.RateLimits{Issuance: rl, Status: off}))
	h := e.newHarness()
	if r := e.do(http.MethodPost, e.base+"/requests", h.req, client("a")); r.status != http.StatusAccepted {
		t.Fatalf("first issuance: %d %s", r.status, r.body)
	}
	other := e.newHarness()
	other.req.User.Email = "sam@CORP.test"
	wantLimited(t, e.do(http.MethodPost, e.base+"/requests", other.req, client("b")), "1")
	if n := e.pendingCount(); n != 1 {
		t.Errorf("%d pending requests, want 1", n)
	}
	e.clock.Advance(time.Second)
	if r := e.do(http.MethodPost, e.base+"/requests", other.req, client("b")); r.status != http.StatusAccepted {
		t.Fatalf("after refill: %d %s", r.status, r.body)
	}
}

// fullStore refuses every new request, as a bounded store that reached its
// bound does.
type fullStore struct{ authority.Store }

func (fullStore) CreateRequest(context.Context, *authority.Request) error {
	return authority.ErrStoreFull
}

// TestStoreFullIsNotRateLimited: a full store answers 503
// temporarily_unavailable, never rate_limited (issue #12 item 4): the
// caller sent too little to be limited, and may retry.
func TestStoreFullIsNotRateLimited(t *testing.T) {
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = fullStore{authority.NewMemoryStore()} })
	r, _ := e.issue(e.newHarness().req)
	wantError(t, r, http.StatusServiceUnavailable, pass.CodeTemporarilyUnavailable)
	if strings.Contains(string(r.body), "store full") {
		t.Errorf("internal cause on the wire: %s", r.body)
	}
}

// Review O3: the Harness's mission calls (read with a mission id,
// complete, stage, delegate) are charged to RateLimits.Missions, sized for
// Harnesses: a flood from one client gets 429 (before any proof is parsed
// for the Harness-only endpoints) while another client's call passes; and
// a mission's budget is spent by its authenticated calls from any client.
func TestReviewHarnessMissionCallsLimited(t *testing.T) {
	t.Parallel()
	const burst = 3
	e := newEnv(t, approveAll, limits(authority.RateLimits{Missions: authority.RateLimit{
		Client: authority.Rate{PerSecond: 1, Burst: burst}, Network: disabled, Overall: disabled}}))
	h1, h2 := e.newHarness(), e.newHarness()
	_, st1 := e.approvedPass(h1)
	_, st2 := e.approvedPass(h2)
	read := func(h *harness, id, who string) response {
		hdr := client(who)
		hdr.Set(pass.ProofHeader, e.missionProof(h.key, h.req.Harness.ID, "/missions/read", id, 0))
		return e.do(http.MethodPost, e.base+"/missions/read", pass.MissionReadRequest{MissionID: id}, hdr)
	}
	for i := range burst {
		if r := read(h1, st1.Mission.ID, "flooder"); r.status != http.StatusOK {
			t.Fatalf("read %d: %d %s", i, r.status, r.body)
		}
	}
	wantLimited(t, read(h1, st1.Mission.ID, "flooder"), "1")
	for _, p := range []string{"/missions/complete", "/missions/stage", "/missions/delegate"} {
		wantLimited(t, e.do(http.MethodPost, e.base+p, map[string]string{}, client("flooder")), "1")
	}
	// Another client, another mission: unaffected.
	if r := read(h2, st2.Mission.ID, "honest"); r.status != http.StatusOK {
		t.Errorf("another client's read: %d %s", r.status, r.body)
	}
	// The first mission's own budget is spent, whichever client calls.
	wantLimited(t, read(h1, st1.Mission.ID, "elsewhere"), "1")
	// A Service's mission read is not charged to the Harness limits.
	if r := e.do(http.MethodPost, e.base+"/missions/read", pass.MissionReadRequest{AuthorizationID: "authz_x"}, client("flooder")); r.status == http.StatusTooManyRequests {
		t.Errorf("a Service's read was charged to the Harness limits: %d %s", r.status, r.body)
	}
}
