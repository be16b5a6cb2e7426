// Package harnesstest runs a real AgentPass network for the tests of an
// agent: an Authority and a Service over TLS on loopback, with a DNS
// server, in the spirit of net/http/httptest.
//
// # Overview
//
// [NewNetwork] starts an Enterprise Authority for the domain of
// [Network.User] and a Service at [Network.URL] around a handler of the
// test's (by default one answering the delegation as JSON), and returns a
// harness.Client already configured for them, with the HTTP and
// discovery clients it uses. The Authority approves every request at
// once, or leaves it for the test to decide ([Options].Manual). Every
// party runs on one fake clock ([Network.Advance]).
//
// # Usage
//
//	func TestAgent(t *testing.T) {
//		n := harnesstest.NewNetwork(t, nil)
//		g, err := n.Harness.Acquire(t.Context(), harness.Request{
//			Service: n.URL, User: n.User, Task: pass.Task{Description: "list my tickets"},
//		})
//		// ... n.Harness.RedeemBearerToken(t.Context(), g, harness.RedeemOptions{})
//	}
//
// To test an agent built on its own harness.Config, build it with
// [Network.Config].
package harnesstest

import (
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

// Options configure [NewNetwork]. The zero value is a network in memory
// whose Authority approves every request at once, and whose Service
// defines the scopes "read" and "write".
type Options struct {
	// Handler is the application behind the Service's middleware. If nil,
	// a handler answering the request's delegation as JSON (user, agent,
	// authority, scope).
	Handler http.Handler
	// Scopes the Service defines. If empty, "read" and "write".
	Scopes []pass.ScopeInfo
	// Manual leaves every request for a person: the agent waits until the
	// test decides with Authority.Decide (the mission id is in the
	// harness.Pending that Harness.Start returns).
	Manual bool
	// Harness adjusts the configuration of Network.Harness before
	// harness.New (a KeyStore, Progress).
	Harness func(*harness.Config)
	// Pool keeps the Authority's and the Service's stores in this
	// PostgreSQL database, migrated on start. If nil, in memory.
	Pool *pgxpool.Pool
}

// Network is a running Authority and Service.
type Network struct {
	// URL is the Service origin, "https://app.test".
	URL string
	// User is the e-mail address the Authority approves for.
	User string
	// Harness is an agent's client, configured for the network.
	Harness *harness.Client
	// Client reaches the network's hosts (and only them), trusting its
	// certificate authority.
	Client *http.Client
	// Discovery resolves the network's DNS records and configurations.
	Discovery *discovery.Client
	// Authority and Service are the parties, for a person's decisions
	// (Authority.Decide, Authority.Revoke) and assertions.
	Authority *authority.Authority
	Service   *service.Service

	kit *deploy.Kit
}

// NewNetwork starts a Network that stops when the test ends; a party
// that cannot be built fails t. o may be nil.
func NewNetwork(t testing.TB, o *Options) *Network {
	t.Helper()
	n, err := Start(o)
	if err != nil {
		t.Fatalf("harnesstest: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

// Start is NewNetwork outside a test (an Example, a main); the caller
// must Close the Network.
func Start(o *Options) (*Network, error) {
	if o == nil {
		o = &Options{}
	}
	k, err := deploy.NewKit(deploy.KitOptions{Handler: o.Handler, Scopes: o.Scopes, Manual: o.Manual, Harness: o.Harness, Pool: o.Pool})
	if err != nil {
		return nil, err
	}
	return &Network{URL: k.ServiceURL, User: k.User, Harness: k.Harness, Client: k.Client, Discovery: k.Discovery,
		Authority: k.Authority, Service: k.Service, kit: k}, nil
}

// Close stops every server of the network.
func (n *Network) Close() { n.kit.Close() }

// Config returns a Harness configuration for the network: its HTTP and
// discovery clients, its clock, the shortest poll interval, and private
// addresses allowed (the network is on loopback; never set that switch
// in production). Add the agent's own fields and call harness.New.
func (n *Network) Config() harness.Config {
	return harness.Config{
		HarnessID:                    "test-harness",
		HTTPClient:                   n.Client,
		Discovery:                    n.kit.NewDiscovery(),
		Now:                          n.kit.Clock.Now,
		MinPoll:                      (100 * time.Millisecond),
		PreferredAuthority:           n.Authority.Identifier(),
		InsecureAllowPrivateNetworks: true,
	}
}

// Now is the time of every party.
func (n *Network) Now() time.Time { return n.kit.Clock.Now() }

// Advance moves every party's clock forward by d (token expiry, pass
// expiry, the Service's re-check of a delegation).
func (n *Network) Advance(d time.Duration) { n.kit.Clock.Advance(d) }
