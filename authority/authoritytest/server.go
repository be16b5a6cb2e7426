package authoritytest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// Options configure [NewServer]. The zero value is a Service defining
// the scopes "read" and "write", agents acting for alex@corp.test, and
// stores in memory.
type Options struct {
	// Handler is the application behind the Service's middleware. If nil,
	// a handler answering the request's delegation as JSON (user, agent,
	// authority, scope).
	Handler http.Handler
	// Scopes the Service defines. If empty, "read" and "write".
	Scopes []pass.ScopeInfo
	// User is the e-mail address agents act for. An Enterprise Authority
	// is published in DNS for its domain. If empty, "alex@corp.test".
	User string
	// Pool keeps the Authority's store (unless its Config has one), the
	// Service's and the replay cache in this PostgreSQL database,
	// migrated on start. If nil, in memory.
	Pool *pgxpool.Pool
}

// Server is the test's own Authority on a network with a real Service
// that trusts it, a DNS server and TLS on loopback, like an
// httptest.Server.
type Server struct {
	// Authority is the Authority built from the test's configuration.
	Authority *authority.Authority
	// URL is the Service origin, "https://app.test".
	URL string
	// User is the e-mail address agents act for.
	User string
	// Service is the Service, for assertions.
	Service *service.Service
	// Harness acquires passes for User, as an agent would.
	Harness *harness.Client
	// Client reaches the network's hosts (and only them), trusting its
	// certificate authority.
	Client *http.Client
	// Discovery resolves the network's DNS records and configurations.
	Discovery *discovery.Client

	kit *deploy.Kit
}

// NewServer builds an Authority from cfg and serves it on a network
// with a Service, as in production: an Enterprise Authority is
// published in DNS for User's domain, a Federated one is trusted by the
// Service, a Service Authority is the Service's own. cfg.Identifier (or
// cfg.BaseURL) must be "https://host" with any host name but no port;
// every other field may stay zero: Keys are generated, Approver approves
// everything, Discovery, HTTPClient and Now are the network's (leave Now
// nil for [Server.Advance] to move the Authority too), and
// InsecureAllowPrivateNetworks is set, since the network is on loopback.
// The Server stops when the test ends; a party that cannot be built
// fails t. o may be nil.
func NewServer(t testing.TB, cfg authority.Config, o *Options) *Server {
	t.Helper()
	s, err := Start(cfg, o)
	if err != nil {
		t.Fatalf("authoritytest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start is NewServer outside a test (an Example, a main); the caller
// must Close the Server.
func Start(cfg authority.Config, o *Options) (*Server, error) {
	if o == nil {
		o = &Options{}
	}
	k, err := deploy.NewKit(deploy.KitOptions{Authority: &cfg, Handler: o.Handler, Scopes: o.Scopes, User: o.User, Pool: o.Pool})
	if err != nil {
		return nil, err
	}
	return &Server{Authority: k.Authority, URL: k.ServiceURL, User: k.User, Service: k.Service,
		Harness: k.Harness, Client: k.Client, Discovery: k.Discovery, kit: k}, nil
}

// Close stops every server of the network.
func (s *Server) Close() { s.kit.Close() }

// Agent acquires a pass for User, redeems it for a bearer token carrying
// scope (none: every approved scope) and returns a client that sends the
// token to URL. It waits while the Authority leaves the request pending.
func (s *Server) Agent(ctx context.Context, scope ...string) (*http.Client, error) {
	return s.kit.Agent(ctx, scope...)
}

// Now is the time of every party on the network's clock.
func (s *Server) Now() time.Time { return s.kit.Clock.Now() }

// Advance moves the network's clock forward by d.
func (s *Server) Advance(d time.Duration) { s.kit.Clock.Advance(d) }
