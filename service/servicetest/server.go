package servicetest

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

// Options configure [NewServer]. The zero value is a Service with the
// scopes "read" and "write" in memory, whose Authority approves every
// request at once.
type Options struct {
	// Scopes the Service defines. If empty, "read" and "write".
	Scopes []pass.ScopeInfo
	// Config adjusts the Service configuration before service.New (for
	// example OnDelegation or Fallback). Leave the network fields
	// (Discovery, HTTPClient, Now) alone.
	Config func(*service.Config)
	// Manual leaves every request for a person: the agent waits until the
	// test decides with Authority.Decide (the mission id is in the
	// harness.Pending that Harness.Start returns).
	Manual bool
	// Pool keeps every store (the Service's, the Authority's and the
	// replay cache) in this PostgreSQL database, migrated on start. If
	// nil, in memory.
	Pool *pgxpool.Pool
}

// Server is a real Service around an application handler, with a real
// Enterprise Authority, DNS and TLS on loopback, like an
// httptest.Server. Every party runs on one fake clock that starts at the
// real time ([Server.Advance]).
type Server struct {
	// URL is the Service origin, "https://app.test": the application
	// behind the Service's middleware at "/", the AgentPass endpoints
	// under "/agentpass/".
	URL string
	// User is the e-mail address the Authority approves for.
	User string
	// Service and Authority are the parties, for assertions and for a
	// person's decisions (Authority.Decide, Authority.Revoke).
	Service   *service.Service
	Authority *authority.Authority
	// Harness acquires passes for User, as an agent would.
	Harness *harness.Client
	// Client reaches the network's hosts (and only them), trusting its
	// certificate authority.
	Client *http.Client
	// Discovery resolves the network's DNS records and configurations.
	Discovery *discovery.Client

	kit *deploy.Kit
}

// NewServer starts a Server whose Service authenticates agents before
// app (nil: a handler answering the delegation as JSON). It stops when
// the test ends; a party that cannot be built fails t. o may be nil.
func NewServer(t testing.TB, app http.Handler, o *Options) *Server {
	t.Helper()
	s, err := Start(app, o)
	if err != nil {
		t.Fatalf("servicetest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start is NewServer outside a test (an Example, a main); the caller
// must Close the Server.
func Start(app http.Handler, o *Options) (*Server, error) {
	if o == nil {
		o = &Options{}
	}
	k, err := deploy.NewKit(deploy.KitOptions{Handler: app, Scopes: o.Scopes, Service: o.Config, Manual: o.Manual, Pool: o.Pool})
	if err != nil {
		return nil, err
	}
	return &Server{URL: k.ServiceURL, User: k.User, Service: k.Service, Authority: k.Authority,
		Harness: k.Harness, Client: k.Client, Discovery: k.Discovery, kit: k}, nil
}

// Close stops every server of the network.
func (s *Server) Close() { s.kit.Close() }

// Agent acquires a pass for User, redeems it for a bearer token carrying
// scope (none: every approved scope) and returns a client that sends the
// token to URL. With Manual it waits for the test's decision.
func (s *Server) Agent(ctx context.Context, scope ...string) (*http.Client, error) {
	return s.kit.Agent(ctx, scope...)
}

// Now is the time of every party.
func (s *Server) Now() time.Time { return s.kit.Clock.Now() }

// Advance moves every party's clock forward by d (token expiry, the
// Service's re-check of a delegation).
func (s *Server) Advance(d time.Duration) { s.kit.Clock.Advance(d) }
