package replicatest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/internal/testnet"
	build "github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
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
	pinHeader = build.PinHeader
)

var scopes = []pass.ScopeInfo{
	{Name: "tickets:read", Description: "Read tickets"},
	{Name: "tickets:write", Description: "Create and edit tickets"},
}

// options shape a deployment.
type options struct {
	// replicas is the number of Authority and of Service replicas; more
	// than one needs postgres.
	replicas int
	// postgres puts every replica on its own pool over one shared schema;
	// otherwise the stores are in memory.
	postgres bool
	// pgConns, when positive, is each pool's MaxConns.
	pgConns int32
	// alg is the algorithm of the Service's and the Authority's signing
	// keys ("": ES256, the default of dpop.GenerateKeySet).
	alg string
	// liveClock runs every party on the wall clock instead of a frozen
	// one, so that replay records, passes and delegations expire during a
	// long benchmark as they would in production.
	liveClock bool
	// authorizationLife, when positive, is how long the delegations of
	// storePasses live (default an hour): short lives keep a sustained
	// benchmark's in-memory Authority store at a steady size.
	authorizationLife time.Duration
	// memoryLimit, when positive, bounds the in-memory Authority store
	// (authority.WithLimit).
	memoryLimit int
	// replayLimit, when positive, gives each in-memory role one replay
	// cache of that many entries for every kind of jti, instead of the
	// defaults sized for the default rate limits (the Service's holder
	// proofs: 1,000 a second), which a sustained benchmark without rate
	// limits outruns; a full cache refuses (503), as it should.
	replayLimit int
	// memoryAuthorityReplay gives the Authorities an in-memory replay
	// cache even on postgres, so that no record travels with a
	// consumption (it is made after it).
	memoryAuthorityReplay bool
	// forgetPasses gives the Authorities' PostgreSQL stores no remembered
	// rows (authoritypg.WithKnownPasses(0)): every consumption reads its
	// row, as at a replica that did not issue the pass.
	forgetPasses bool
	// checkInterval is the Services' CheckInterval (zero: the default).
	checkInterval time.Duration
	// authLimits and svcLimits are the rate limits of the Authority and
	// Service replicas. If nil, every limit is off: the replica tests and
	// benchmarks send thousands of requests from one loopback address on a
	// frozen clock, which the defaults rightly refuse.
	authLimits *authority.RateLimits
	svcLimits  *service.RateLimits
	// countTrips counts the round trips of the first Authority and the
	// first Service replica to PostgreSQL (postgres only).
	countTrips bool
	// onDelegation is the Services' OnDelegation (nil: none).
	onDelegation func(context.Context, *service.Delegation) error
}

// deployment is an Enterprise Authority for corp.test at idp.corp.test and a
// Service at app.test, each run as opts.replicas replicas behind a
// balancer, on a loopback network with DNS and TLS, and a Harness.
type deployment struct {
	t           testing.TB
	net         *testnet.Network
	clock       *testnet.Clock
	client      *http.Client
	serviceKeys *dpop.KeySet
	// authorizationLife is options.authorizationLife.
	authorizationLife time.Duration

	authorities     []*authority.Authority
	authorityStores []authority.Store
	services        []*service.Service
	authLB, svcLB   *build.Balancer
	harness         *harness.Client
	// redeemURL is the bearer redemption endpoint, read once: a Harness
	// keeps the configuration it discovered.
	redeemURL, validateURL string
	// authTrips and svcTrips count the round trips of replica 0 of each
	// role (options.countTrips).
	authTrips, svcTrips *pgtest.Trips
	// authPool and svcPool are those counted pools.
	authPool, svcPool *pgxpool.Pool
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
	// runs after the network has stopped. Each replica has a pool of its
	// own on one schema; every replica of both roles records its proofs
	// and assertions in the one replay table.
	authReplicas := make([]build.Stores, o.replicas) // zero: in memory
	svcReplicas := make([]build.Stores, o.replicas)
	d := &deployment{t: t, authorizationLife: o.authorizationLife}
	newClock := func() *testnet.Clock {
		if o.liveClock {
			return testnet.NewLiveClock()
		}
		return testnet.NewClock(time.Now())
	}
	switch {
	case o.postgres:
		pools := pgtest.Replicas(t, 2*o.replicas, false)
		if o.pgConns > 0 {
			for i, p := range pools {
				cfg := p.Config()
				cfg.MaxConns = o.pgConns
				var err error
				if pools[i], err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(pools[i].Close)
			}
		}
		if o.countTrips {
			pools[0], d.authTrips = pgtest.CountedPool(t, pools[0])
			pools[o.replicas], d.svcTrips = pgtest.CountedPool(t, pools[o.replicas])
			d.authPool, d.svcPool = pools[0], pools[o.replicas]
		}
		d.clock = newClock()
		for i := range o.replicas {
			var err error
			if authReplicas[i], err = build.Postgres(ctx, pools[i], d.clock.Now); err != nil {
				t.Fatalf("authority replica %d: %v", i, err)
			}
			if svcReplicas[i], err = build.Postgres(ctx, pools[o.replicas+i], d.clock.Now); err != nil {
				t.Fatalf("service replica %d: %v", i, err)
			}
			authReplicas[i].Service, svcReplicas[i].Authority = nil, nil
			if o.memoryAuthorityReplay {
				authReplicas[i].ReplayCache = dpop.NewMemoryReplayCache(dpop.WithClock(d.clock.Now))
			}
			if o.forgetPasses {
				authReplicas[i].Authority = authoritypg.New(pools[i], authoritypg.WithClock(d.clock.Now), authoritypg.WithKnownPasses(0))
			}
		}
	case o.replicas > 1:
		t.Fatal("replicas need a shared store: set postgres")
	default:
		d.clock = newClock()
		authReplicas[0].Authority = authority.NewMemoryStore(authority.WithLimit(o.memoryLimit))
	}
	d.net = testnet.New(t)
	// The network's client, with room for a loaded machine: in the
	// concurrent tests every request waits for most of the others.
	c := *d.net.Client()
	c.Timeout = time.Minute
	d.client = &c
	t.Cleanup(d.client.CloseIdleConnections)

	acfg := authority.Config{
		Identifier: authorityID,
		TrustMode:  pass.TrustEnterprise,
		Approver:   build.ApproveAll("policy:replicatest"),
		HTTPClient: d.client,
		Now:        d.clock.Now,
		PollAfter:  100 * time.Millisecond,
		RateLimits: authority.RateLimits{Issuance: build.Unlimited(), Status: build.Unlimited(), Services: build.Unlimited(), Missions: build.Unlimited()},
	}
	if o.authLimits != nil {
		acfg.RateLimits = *o.authLimits
	}
	if o.replayLimit > 0 && !o.postgres {
		acfg.ReplayCache = dpop.NewMemoryReplayCache(dpop.WithLimit(o.replayLimit), dpop.WithClock(d.clock.Now))
	}
	if o.alg != "" {
		acfg.Keys = keySet(t, o.alg)
	}
	var err error
	if d.authorities, err = build.Authorities(d.net, acfg, authReplicas...); err != nil {
		t.Fatal(err)
	}
	var handlers []http.Handler
	for i, a := range d.authorities {
		d.authorityStores = append(d.authorityStores, authReplicas[i].Authority)
		handlers = append(handlers, a)
	}
	d.validateURL = d.authorities[0].Configuration().Endpoints.Validate
	d.authLB = build.NewBalancer(handlers...)
	d.net.Serve(idpHost, d.authLB)
	d.net.PublishEnterprise("corp.test", d.authorities[0].ConfigurationURL())

	if o.alg != "" {
		d.serviceKeys = keySet(t, o.alg)
	} else if d.serviceKeys, err = dpop.GenerateKeySet(); err != nil {
		t.Fatal(err)
	}
	scfg := service.Config{
		Origin:        appOrigin,
		Name:          "Tickets",
		Keys:          d.serviceKeys,
		Scopes:        scopes,
		HTTPClient:    d.client,
		Now:           d.clock.Now,
		CheckInterval: o.checkInterval,
		OnDelegation:  o.onDelegation,
		RateLimits: service.RateLimits{Resolve: build.Unlimited(), Initialize: build.Unlimited(),
			Redeem: build.Unlimited(), AvailableScopes: build.Unlimited()},
	}
	if o.svcLimits != nil {
		scfg.RateLimits = *o.svcLimits
	}
	if o.replayLimit > 0 && !o.postgres {
		scfg.ReplayCache = dpop.NewMemoryReplayCache(dpop.WithLimit(o.replayLimit), dpop.WithClock(d.clock.Now))
	}
	if d.services, err = build.Services(d.net, scfg, svcReplicas...); err != nil {
		t.Fatal(err)
	}
	d.redeemURL = d.services[0].Configuration().Endpoints.RedeemBearerToken
	handlers = nil
	for i, svc := range d.services {
		mux := http.NewServeMux()
		mux.Handle("/agentpass/", svc)
		mux.Handle("GET /api/whoami", svc.Middleware(service.RequireScope("tickets:read")(whoamiHandler(i))))
		handlers = append(handlers, mux)
	}
	d.svcLB = build.NewBalancer(handlers...)
	d.net.Serve(appHost, d.svcLB)
	d.net.PublishService(appHost, d.services[0].ConfigurationURL())

	d.harness, err = build.Harness(d.net, harness.Config{
		HarnessID:  harnessID,
		HTTPClient: d.client,
		Now:        d.clock.Now,
		MinPoll:    (100 * time.Millisecond),
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
func (d *deployment) discovery() *discovery.Client { return d.net.DiscoveryAt(d.clock.Now) }

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
				Task: pass.Task{Description: fmt.Sprintf("Triage my open tickets (%d)", i)},
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
		URL: d.redeemURL, Header: pin(replica), Body: req,
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

// keySet is a key set of one new key of alg.
func keySet(t testing.TB, alg string) *dpop.KeySet {
	t.Helper()
	k, err := dpop.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := dpop.NewKeySet(k)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}
