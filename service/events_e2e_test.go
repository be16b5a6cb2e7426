package service_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

// appliedStore tells, through applied, every event the Service's store
// applied: a test waits for it instead of sleeping.
type appliedStore struct {
	service.Store
	applied chan string
}

func (s *appliedStore) ApplyEvent(ctx context.Context, e service.MissionEvent) (bool, error) {
	ok, err := s.Store.ApplyEvent(ctx, e)
	if ok && err == nil {
		select {
		case s.applied <- e.AuthorizationID:
		default:
		}
	}
	return ok, err
}

// eventNet is a Service taking events by method from a real Enterprise
// Authority (memory store, so with an outbox) whose authorization checks
// are counted.
type eventNet struct {
	*env
	ent *authority.Authority
	// shared is the Service's store; replicaB, when set, is a second
	// replica of the Service on its own pool of the same database.
	shared   service.Store
	replicaB http.Handler
	checks   atomic.Int32
	applied  chan string
	user     string
	cancel   context.CancelFunc
}

func newEventNet(tb testing.TB, method string) *eventNet { return newEventNetOn(tb, method, false) }

// newEventNetOn is newEventNet, with two Service replicas on PostgreSQL
// when pg is set (the test is skipped without a database).
func newEventNetOn(tb testing.TB, method string, pg bool) *eventNet {
	tb.Helper()
	e := newNet(tb)
	n := &eventNet{env: e, applied: make(chan string, 1024), user: "alex@real.test"}
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		tb.Fatal(err)
	}
	n.ent, err = authority.New(authority.Config{
		Identifier: "https://idp.real.test",
		TrustMode:  pass.TrustEnterprise,
		Keys:       keys,
		Approver: authority.ApproverFunc(func(ctx context.Context, r *authority.Request) (authority.Decision, error) {
			return authority.Decision{Outcome: authority.Approve, DecidedBy: "test"}, nil
		}),
		Discovery:                    e.authorityDiscovery(),
		HTTPClient:                   e.client,
		InsecureAllowPrivateNetworks: true,
		Now:                          e.clock.Now,
		// The clock is frozen: buckets never refill.
		RateLimits: authority.RateLimits{Issuance: unlimited, Status: unlimited, Services: unlimited},
	})
	if err != nil {
		tb.Fatal(err)
	}
	e.net.Serve("idp.real.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/authorization-check") {
			n.checks.Add(1)
		}
		n.ent.ServeHTTP(w, r)
	}))
	e.net.PublishEnterprise("real.test", n.ent.ConfigurationURL())
	var storeB service.Store
	if pg {
		pools := pgtest.Replicas(tb, 2, false)
		a, b := servicepg.New(pools[0]), servicepg.New(pools[1])
		if err := a.Migrate(context.Background()); err != nil {
			tb.Fatal(err)
		}
		n.shared, storeB = a, b
	}
	e.start(func(c *service.Config) {
		c.EventDelivery = method
		c.CheckInterval = (60 * time.Second)
		if n.shared == nil {
			n.shared = e.store
		}
		c.Store = &appliedStore{Store: n.shared, applied: n.applied}
		c.RateLimits.Redeem, c.RateLimits.AvailableScopes = unlimited, unlimited
		c.Logger = nil
	})
	if storeB != nil {
		cfg := e.cfg
		cfg.Store = storeB
		b, err := service.New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		n.replicaB = b.Middleware(service.RequireScope("tickets:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	done := make(chan struct{})
	go func() {
		defer close(done)
		if method == pass.DeliveryPush {
			_ = n.ent.RunEventTransmitter(ctx)
		} else {
			_ = e.svc.RunEventPoller(ctx)
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
	return n
}

// unlimited turns every level of a rate limit off.
var unlimited = service.RateLimit{Client: service.Rate{PerSecond: -1}, Network: service.Rate{PerSecond: -1},
	User: service.Rate{PerSecond: -1}, Domain: service.Rate{PerSecond: -1}, Overall: service.Rate{PerSecond: -1}}

// delegation acquires and redeems a pass and returns its token and the
// mission id the Service recorded.
func (n *eventNet) delegation(t testing.TB) (tok, missionID string) {
	t.Helper()
	h := newHarness(t)
	value := n.acquire(t, n.ent, h, pass.BearerToken, n.user, "")
	req := pass.RedemptionRequest{
		AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: value}, Authority: n.ent.Identifier(), User: pass.User{Email: n.user},
		HarnessProof: h.proof(t, n.env, n.endpoint(pass.BearerToken), value),
	}
	r := n.redeem(pass.BearerToken, req, nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	_, d, err := n.shared.Credential(context.Background(), secret.Hash(resp.BearerToken), n.clock.Now())
	if err != nil || d.MissionID == "" {
		t.Fatalf("delegation %+v, %v: no mission", d, err)
	}
	return resp.BearerToken, d.MissionID
}

// call makes one API call and returns its status: over the network to
// the Service (replica A), or in process to replica B when there is one.
func (n *eventNet) call(tb testing.TB, tok string) int {
	tb.Helper()
	if n.replicaB != nil {
		req := httptest.NewRequest(http.MethodGet, appURL+"/api/tickets", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		n.replicaB.ServeHTTP(w, req)
		return w.Code
	}
	req, _ := http.NewRequest(http.MethodGet, appURL+"/api/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := n.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// revokeAndWait revokes the mission and returns how long after Revoke
// returned the first API call was refused: a call at once, and then one
// after each event the store applied.
func (n *eventNet) revokeAndWait(tb testing.TB, tok, missionID string) time.Duration {
	tb.Helper()
	for len(n.applied) > 0 {
		<-n.applied
	}
	if _, err := n.ent.Revoke(context.Background(), missionID, "admin@real.test", "test"); err != nil {
		tb.Fatalf("Revoke: %v", err)
	}
	start := time.Now()
	timeout := time.NewTimer(40 * time.Second)
	defer timeout.Stop()
	for {
		if st := n.call(tb, tok); st == http.StatusUnauthorized {
			return time.Since(start)
		} else if st != http.StatusOK {
			tb.Fatalf("API call: %d", st)
		}
		select {
		case <-n.applied:
		case <-timeout.C:
			tb.Fatal("the revocation never reached the Service")
		}
	}
}

// E1 functional twin: Authority.Revoke pushes a SET; the next API call is
// refused with no authorization check made.
func TestRevocationPushEndToEnd(t *testing.T) {
	n := newEventNet(t, pass.DeliveryPush)
	tok, mid := n.delegation(t)
	// The counter sees checks: one past the interval.
	n.clock.Advance((60 * time.Second) + time.Second)
	if st := n.call(t, tok); st != http.StatusOK || n.checks.Load() != 1 {
		t.Fatalf("before: %d, %d checks", st, n.checks.Load())
	}
	n.checks.Store(0)
	n.revokeAndWait(t, tok, mid)
	if c := n.checks.Load(); c != 0 {
		t.Errorf("%d authorization checks, want 0", c)
	}
}

// E8 functional twin: the same by long poll, acknowledged.
func TestRevocationPollEndToEnd(t *testing.T) {
	n := newEventNet(t, pass.DeliveryPoll)
	tok, mid := n.delegation(t)
	n.revokeAndWait(t, tok, mid)
	if c := n.checks.Load(); c != 0 {
		t.Errorf("%d authorization checks, want 0", c)
	}
}

// E10: pushed to replica A, refused at once by replica B (PostgreSQL),
// with no check made.
func TestRevocationPushReplicas(t *testing.T) {
	n := newEventNetOn(t, pass.DeliveryPush, true)
	tok, mid := n.delegation(t)
	if st := n.call(t, tok); st != http.StatusOK {
		t.Fatalf("replica B before: %d", st)
	}
	n.revokeAndWait(t, tok, mid)
	if c := n.checks.Load(); c != 0 {
		t.Errorf("%d authorization checks, want 0", c)
	}
}

func benchRevocation(b *testing.B, method string, pg bool) {
	n := newEventNetOn(b, method, pg)
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		tok, mid := n.delegation(b)
		b.StartTimer()
		lat = append(lat, n.revokeAndWait(b, tok, mid))
	}
	reportP99(b, lat)
}

func reportP99(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 { return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / 1e6 }
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
}

// BenchmarkRevocationPush (E1): from Authority.Revoke returning to the
// first refused API call, pushed over loopback TLS, memory stores.
func BenchmarkRevocationPush(b *testing.B) { benchRevocation(b, pass.DeliveryPush, false) }

// BenchmarkRevocationPoll (E8): the same by RFC 8936 long poll.
func BenchmarkRevocationPoll(b *testing.B) { benchRevocation(b, pass.DeliveryPoll, false) }

// BenchmarkRevocationPushReplicas (E10): pushed to replica A, measured at
// replica B; two Service replicas on PostgreSQL.
func BenchmarkRevocationPushReplicas(b *testing.B) { benchRevocation(b, pass.DeliveryPush, true) }

// BenchmarkMiddlewareReceiverFlood reports the middleware's latency over
// loopback TLS (one authorized API call at a time, keep-alive, warm check
// cache) quiet and under a flood of the event receiver, and their ratio:
//
//	go test -run '^$' -bench MiddlewareReceiverFlood -benchtime 4s ./service/ [-args -flood.rate=2000 -flood.conns=8]
//
// The flood is what the receiver is built to absorb: SETs sent far faster
// than its rate limit allows (by default 2,000 a second, 20 times the
// per-client limit of 100 a second, twice its Overall limit, ten times
// what it admits under the flood, and far above any Authority's event
// rate), from one address over a few
// keep-alive connections, each SET signed by a key the Service does not
// know, for a delegation it holds. Past the burst, all but about 100 a
// second are refused 429 before their body is read; those are parsed,
// looked up and refused invalid_key. The sender runs in a child process
// (this test binary, see TestReceiverFloodSender) with GOMAXPROCS=1 at a
// fixed offered rate, so it neither shares the Service's goroutines and
// heap nor takes more than one of the machine's cores. A flood that
// saturates the machine's CPU with TLS alone is a network-level denial of
// service that no receiver can absorb; the receiver's part is that its own
// cost per refused SET stays small, so a flood far above its limit leaves
// the middleware's p99 within 2× of quiet.
//
// Quiet and flood alternate in blocks of floodBlock calls within one run,
// so both see the same machine (other processes, CPU frequency, GC state).
// The Service's clock runs in real time, so its limiter refills as in
// production. Metrics: p50 and p99 of each phase in ms, p99-ratio (flood
// over quiet), the offered and achieved flood rates, and the rates the
// receiver refused (429) and parsed.
func BenchmarkMiddlewareReceiverFlood(b *testing.B) {
	e := newNet(b)
	e.client = e.net.Client()
	base, real0 := e.clock.Now(), time.Now()
	e.start(func(c *service.Config) {
		c.EventDelivery = pass.DeliveryPush
		c.Now = func() time.Time { return base.Add(time.Since(real0)) }
		c.CheckInterval = 60 * time.Second
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	})
	e.idp.speakMission()
	vr := validation(corpUser, pass.BearerToken, "tickets:read")
	vr.AuthorizationID, vr.Mission = "authz-bench", mission("msn_bench", pass.MissionActive, 1)
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr)), nil)
	if r.status != http.StatusOK {
		b.Fatalf("redeem: %d", r.status)
	}
	var resp pass.BearerTokenResponse
	r.decode(b, &resp)
	call := func() time.Duration {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodGet, appURL+"/api/tickets", nil)
		req.Header.Set("Authorization", "Bearer "+resp.BearerToken)
		res, err := e.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		d := time.Since(start)
		if res.StatusCode != http.StatusOK {
			b.Fatalf("API call: %d", res.StatusCode)
		}
		return d
	}
	other, _ := dpop.GenerateKeySet()
	raw := e.idp.signSET(b, e.idp.set("authz-bench", "https://schemas.openid.net/secevent/caep/event-type/session-revoked", nil), other.Current())
	flood := startFloodSender(b, e, raw, *floodRate, *floodConns)
	// Past the receiver's burst and the connections' handshakes before
	// measuring.
	flood.set(b, true)
	flood.send(b, "reset")
	call()
	var quiet, flooded []time.Duration
	on, i := false, 0
	for b.Loop() {
		if i%floodBlock == 0 && i > 0 {
			on = !on
			flood.set(b, on)
		}
		i++
		if d := call(); on {
			flooded = append(flooded, d)
		} else {
			quiet = append(quiet, d)
		}
	}
	st := flood.stop(b)
	if len(quiet) == 0 || len(flooded) == 0 {
		return // too short a run for both phases (b.N = 1 probes)
	}
	q50, q99 := percentiles(quiet)
	f50, f99 := percentiles(flooded)
	b.ReportMetric(q50, "quiet-p50-ms")
	b.ReportMetric(q99, "quiet-p99-ms")
	b.ReportMetric(f50, "flood-p50-ms")
	b.ReportMetric(f99, "flood-p99-ms")
	b.ReportMetric(f99/q99, "p99-ratio")
	b.ReportMetric(st.Offered, "offered-SETs/s")
	b.ReportMetric(st.Achieved, "achieved-SETs/s")
	if st.Seconds > 0 {
		b.ReportMetric(float64(st.Refused)/st.Seconds, "refused-SETs/s")
		b.ReportMetric(float64(st.Parsed)/st.Seconds, "parsed-SETs/s")
	}
	if st.Errors > 0 {
		b.Logf("flood: %d requests failed", st.Errors)
	}
}

// floodBlock is how many API calls each quiet or flood block lasts.
const floodBlock = 200

// percentiles returns the p50 and p99 of lat in milliseconds.
func percentiles(lat []time.Duration) (p50, p99 float64) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 { return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / 1e6 }
	return p(0.5), p(0.99)
}
