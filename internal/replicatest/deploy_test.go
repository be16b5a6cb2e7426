package replicatest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

// Names of the deployment.
const (
	appHost     = "app.test"
	appOrigin   = "https://" + appHost
	idpHost     = "idp.corp.test"
	authorityID = "https://" + idpHost
	user        = "alex@corp.test" // _agentpass.corp.test -> the Authority
	harnessID   = "replica-harness"

	// pinHeader makes the load balancer send a request to one replica
	// (its index); requests without it are spread round-robin.
	pinHeader = "X-Test-Replica"
	// servedByHeader names the replica that answered.
	servedByHeader = "X-Test-Served-By"
)

var scopes = []pass.ScopeInfo{
	{Name: "tickets:read", Description: "Read tickets"},
	{Name: "tickets:write", Description: "Create and edit tickets"},
}

// clock is the controllable time of every party. It starts at the real time
// (the network's certificates are valid now).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// balancer is the load balancer in front of the replicas of one role: it
// sends each request to the next replica (round-robin), or to the replica
// named by pinHeader, and counts what each replica served, by path.
type balancer struct {
	backends []http.Handler
	next     atomic.Uint64

	mu   sync.Mutex
	hits map[string][]int
}

func newBalancer(backends []http.Handler) *balancer {
	return &balancer{backends: backends, hits: map[string][]int{}}
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int((b.next.Add(1) - 1) % uint64(len(b.backends)))
	if v := r.Header.Get(pinHeader); v != "" {
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
	w.Header().Set(servedByHeader, strconv.Itoa(i))
	b.backends[i].ServeHTTP(w, r)
}

// Hits returns how many requests for path each replica served.
func (b *balancer) Hits(path string) []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]int, len(b.backends))
	copy(out, b.hits[path])
	return out
}

// options shape a deployment.
type options struct {
	// replicas is the number of Authority and of Service replicas; more
	// than one needs postgres.
	replicas int
	// postgres puts every replica on its own pool over one shared schema;
	// otherwise the stores are in memory.
	postgres bool
	// checkInterval is the Services' CheckInterval (zero: the default).
	checkInterval time.Duration
	// authLimits and svcLimits are the rate limits of the Authority and
	// Service replicas. If nil, every limit is off: the replica tests and
	// benchmarks send thousands of requests from one loopback address on a
	// frozen clock, which the defaults rightly refuse.
	authLimits *authority.RateLimits
	svcLimits  *service.RateLimits
}

// noLimit turns every level of an endpoint's rate limit off.
var noLimit = authority.RateLimit{
	Client: authority.Rate{PerSecond: -1}, Network: authority.Rate{PerSecond: -1},
	User: authority.Rate{PerSecond: -1}, Domain: authority.Rate{PerSecond: -1}, Overall: authority.Rate{PerSecond: -1},
}

// deployment is an Enterprise Authority for corp.test at idp.corp.test and a
// Service at app.test, each run as opts.replicas replicas behind a
// balancer, on a loopback network with DNS and TLS, and a Harness.
type deployment struct {
	t           testing.TB
	net         *testnet.Network
	clock       *clock
	client      *http.Client
	serviceKeys *dpop.KeySet

	authorities     []*authority.Authority
	authorityStores []authority.Store
	services        []*service.Service
	authLB, svcLB   *balancer
	harness         *harness.Client
}

// whoami is what the application route answers: who the middleware
// authenticated, and which replica answered.
type whoami struct {
	Replica         int                    `json:"replica"`
	User            string                 `json:"user"`
	Agent           string                 `json:"agent"`
	AuthorizationID string                 `json:"authorization_id"`
	Scope           pass.Scope             `json:"scope"`
	Credential      service.CredentialKind `json:"credential"`
}

func (*whoami) Validate() error { return nil }

func deploy(t testing.TB, o options) *deployment {
	t.Helper()
	if o.replicas < 1 {
		o.replicas = 1
	}
	ctx := context.Background()
	// The pools come first, so that their cleanup (close, drop the schema)
	// runs after the network has stopped.
	var pools []*pgxpool.Pool // Authority replicas, then Service replicas
	switch {
	case o.postgres:
		first := pgtest.Pool(t)
		pools = append(pools, first)
		for range 2*o.replicas - 1 {
			pools = append(pools, pgtest.SharedPool(t, first))
		}
	case o.replicas > 1:
		t.Fatal("replicas need a shared store: set postgres")
	}
	d := &deployment{t: t, net: testnet.New(t), clock: newClock()}
	// The network's client, with room for a loaded machine: in the
	// concurrent tests every request waits for most of the others.
	c := *d.net.Client()
	c.Timeout = time.Minute
	d.client = &c
	t.Cleanup(d.client.CloseIdleConnections)

	authKeys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	if d.serviceKeys, err = dpop.GenerateKeySet(); err != nil {
		t.Fatal(err)
	}
	approveAll := authority.ApproverFunc(func(context.Context, *authority.Request) (authority.Decision, error) {
		return authority.Decision{Outcome: authority.Approve, DecidedBy: "policy:replicatest"}, nil
	})
	var handlers []http.Handler
	for i := range o.replicas {
		cfg := authority.Config{
			Identifier: authorityID,
			TrustMode:  pass.TrustEnterprise,
			Keys:       authKeys,
			Approver:   approveAll,
			Discovery:  d.discovery(),
			HTTPClient: d.client,
			Now:        d.clock.Now,
			PollAfter:  100 * time.Millisecond,
			RateLimits: authority.RateLimits{Issuance: noLimit, Status: noLimit},
			// Every party listens on loopback.
			InsecureAllowPrivateNetworks: true,
		}
		if o.authLimits != nil {
			cfg.RateLimits = *o.authLimits
		}
		if o.postgres {
			st := authoritypg.New(pools[i], authoritypg.WithNow(d.clock.Now))
			if err := st.Migrate(ctx); err != nil {
				t.Fatalf("authority replica %d: migrate: %v", i, err)
			}
			rc := dpoppg.New(pools[i], d.clock.Now)
			if err := rc.Migrate(ctx); err != nil {
				t.Fatalf("authority replica %d: migrate replay cache: %v", i, err)
			}
			cfg.Store, cfg.ReplayCache = st, rc
		} else {
			cfg.Store = authority.NewMemoryStore()
		}
		a, err := authority.New(cfg)
		if err != nil {
			t.Fatalf("authority replica %d: %v", i, err)
		}
		d.authorities = append(d.authorities, a)
		d.authorityStores = append(d.authorityStores, cfg.Store)
		handlers = append(handlers, a)
	}
	d.authLB = newBalancer(handlers)
	d.net.Serve(idpHost, d.authLB)
	d.net.PublishEnterprise("corp.test", d.authorities[0].ConfigurationURL())

	handlers = nil
	for i := range o.replicas {
		cfg := service.Config{
			Origin:        appOrigin,
			Name:          "Tickets",
			Keys:          d.serviceKeys,
			Scopes:        scopes,
			Discovery:     d.discovery(),
			HTTPClient:    d.client,
			Now:           d.clock.Now,
			CheckInterval: o.checkInterval,
			RateLimits:    service.RateLimits{Resolve: noLimit, Initialize: noLimit, Redeem: noLimit, AvailableScopes: noLimit},
			// Every party listens on loopback.
			InsecureAllowPrivateNetworks: true,
		}
		if o.svcLimits != nil {
			cfg.RateLimits = *o.svcLimits
		}
		if o.postgres {
			st := servicepg.New(pools[o.replicas+i], servicepg.WithNow(d.clock.Now))
			if err := st.Migrate(ctx); err != nil {
				t.Fatalf("service replica %d: migrate: %v", i, err)
			}
			// The same replay table as the Authority replicas: one for
			// every role.
			rc := dpoppg.New(pools[o.replicas+i], d.clock.Now)
			if err := rc.Migrate(ctx); err != nil {
				t.Fatalf("service replica %d: migrate replay cache: %v", i, err)
			}
			cfg.Store, cfg.ReplayCache = st, rc
		}
		svc, err := service.New(cfg)
		if err != nil {
			t.Fatalf("service replica %d: %v", i, err)
		}
		d.services = append(d.services, svc)
		mux := http.NewServeMux()
		mux.Handle("/agentpass/", svc)
		mux.Handle("GET /api/whoami", svc.Middleware(service.RequireScope("tickets:read")(whoamiHandler(i))))
		handlers = append(handlers, mux)
	}
	d.svcLB = newBalancer(handlers)
	d.net.Serve(appHost, d.svcLB)
	d.net.PublishService(appHost, d.services[0].ConfigurationURL())

	d.harness, err = harness.New(harness.Config{
		HarnessID:  harnessID,
		HTTPClient: d.client,
		Discovery:  d.discovery(),
		Now:        d.clock.Now,
		MinPoll:    harness.MinPollFloor,
		// Every party listens on loopback.
		InsecureAllowPrivateNetworks: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func whoamiHandler(replica int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dl, _ := service.DelegationFrom(r.Context())
		httpx.WriteJSON(w, http.StatusOK, whoami{
			Replica: replica, User: dl.User, Agent: dl.Agent, AuthorizationID: dl.AuthorizationID,
			Scope: dl.Scope, Credential: dl.Credential,
		})
	})
}

// discovery returns a new discovery client (each replica has its own
// caches, as separate processes would).
func (d *deployment) discovery() *discovery.Client {
	cfg := d.net.DiscoveryConfig()
	cfg.Now = d.clock.Now
	c, err := discovery.New(cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

// acquire obtains n approved passes of type typ through the Harness
// (resolution at the Service, issuance and status at the Authority, all
// through the balancers), with a few requests in flight at once.
func (d *deployment) acquire(ctx context.Context, n int, typ pass.PassType) ([]*harness.Grant, error) {
	grants := make([]*harness.Grant, n)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range grants {
		g.Go(func() error {
			req := harness.Request{
				Service: appOrigin, User: user, Type: typ,
				Task: harness.Task{Description: fmt.Sprintf("Triage my open tickets (%d)", i)},
			}
			if typ == pass.BrowserSession {
				req.Destination = appOrigin + "/inbox"
			}
			gr, err := d.harness.Acquire(ctx, req)
			if err != nil {
				return fmt.Errorf("acquire %d: %w", i, err)
			}
			grants[i] = gr
			return nil
		})
	}
	return grants, g.Wait()
}

// redemption builds a bearer redemption request for g with a fresh harness
// proof (a new jti each time), as harness.Client.RedeemBearerToken sends
// it; unlike the Client it can be built any number of times per grant.
func (d *deployment) redemption(g *harness.Grant) (pass.RedemptionRequest, error) {
	proof, err := g.Key.HarnessProof(dpop.ProofParams{
		HarnessID: g.HarnessID,
		Audience:  g.Service,
		Method:    http.MethodPost,
		URL:       g.ServiceConfiguration.Endpoints.RedeemBearerToken,
		AgentPass: g.AgentPass().Value,
		TTL:       2 * time.Minute, // at most the verifier's 5 min
		Now:       d.clock.Now(),
	})
	if err != nil {
		return pass.RedemptionRequest{}, err
	}
	return pass.RedemptionRequest{
		AgentPass:    g.AgentPass(),
		Authority:    g.Authority,
		User:         pass.User{Email: g.User},
		HarnessProof: &pass.JWTContainer{JWT: proof},
	}, nil
}

// redeem posts req to the bearer endpoint of the Service replica given
// (-1: the balancer chooses).
func (d *deployment) redeem(ctx context.Context, replica int, req pass.RedemptionRequest) (*pass.BearerTokenResponse, error) {
	var out pass.BearerTokenResponse
	_, err := httpx.Do(ctx, d.client, httpx.Call{
		URL: d.services[0].Configuration().Endpoints.RedeemBearerToken, Header: pin(replica), Body: req,
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// call GETs /api/whoami at the Service replica given with the header h
// (credentials) added.
func (d *deployment) call(ctx context.Context, replica int, h http.Header) (*whoami, error) {
	hdr := pin(replica)
	for k, v := range h {
		hdr[k] = v
	}
	var out whoami
	if _, err := httpx.Do(ctx, d.client, httpx.Call{URL: appOrigin + "/api/whoami", Header: hdr}, &out); err != nil {
		return nil, err
	}
	if out.Replica != replica && replica >= 0 {
		return nil, fmt.Errorf("answered by replica %d, want %d", out.Replica, replica)
	}
	return &out, nil
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func pin(replica int) http.Header {
	h := http.Header{}
	if replica >= 0 {
		h.Set(pinHeader, strconv.Itoa(replica))
	}
	return h
}

// errorCode returns the status and code of a peer's error answer, or 0 and "".
func errorCode(err error) (int, pass.Code) {
	var pe *pass.PeerError
	if errors.As(err, &pe) {
		return pe.Status, pe.Code
	}
	return 0, ""
}
