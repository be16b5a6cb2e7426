// Package e2e builds, for the harness tests, a whole AgentPass network on
// loopback with real parties: a Service (package service) wrapping a small
// ticket application, an Enterprise Authority, a Service Authority and two
// Federated Authorities (package authority), DNS records for every
// resolution branch, and one clock shared by everyone. The parties are
// built by internal/testnet/deploy; this package only chooses the
// topology.
package e2e

import (
	"fmt"
	"html"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// Names of the network.
const (
	AppHost   = "app.test"
	AppOrigin = "https://" + AppHost

	EnterpriseID  = "https://idp.corp.test"
	ServiceAuthID = "https://sa.app.test"
	FederatedID   = "https://fed.test"
	Federated2ID  = "https://fed2.test"

	// Users, one per resolution branch.
	EnterpriseUser = "alex@corp.test" // _agentpass.corp.test -> the Enterprise Authority
	SoloUser       = "sam@solo.test"  // no record: Service or Federated Authorities
	NoneUser       = "nina@none.test" // _agentpass.none.test = "none"
	BrokenUser     = "bo@broken.test" // _agentpass.broken.test -> an invalid configuration
)

// Scopes the application defines.
var Scopes = []pass.ScopeInfo{
	{Name: "tickets:read", Description: "Read tickets"},
	{Name: "tickets:write", Description: "Create and edit tickets"},
}

// Clock is the controllable time of every party. It starts at the real time
// (the network's certificates are valid now).
type Clock = testnet.Clock

// Options adjust the network.
type Options struct {
	// Approver decides at every Authority. If nil, every request is
	// approved with all available scopes.
	Approver authority.Approver
	// Service adjusts the Service configuration before service.New.
	Service func(*service.Config)
	// Authority adjusts each Authority configuration before authority.New.
	Authority func(*authority.Config)
}

// Env is a running network.
type Env struct {
	Net   *testnet.Network
	Clock *Clock
	// Client reaches the network's hosts, without keep-alives so the
	// network shuts down at once when the test ends.
	Client  *http.Client
	Service *service.Service

	Enterprise, ServiceAuthority, Federated, Federated2 *authority.Authority
}

// Authority returns the Authority with the given identifier.
func (e *Env) Authority(id string) *authority.Authority {
	return map[string]*authority.Authority{
		EnterpriseID: e.Enterprise, ServiceAuthID: e.ServiceAuthority, FederatedID: e.Federated, Federated2ID: e.Federated2,
	}[id]
}

// Discovery returns a new discovery client for the network, on the shared
// clock.
func (e *Env) Discovery(testing.TB) *discovery.Client { return e.NewDiscovery() }

// NewDiscovery returns a new discovery client for the network, on the
// shared clock.
func (e *Env) NewDiscovery() *discovery.Client {
	cfg := e.Net.DiscoveryConfig()
	cfg.HTTPClient = e.Client
	cfg.Now = e.Clock.Now
	d, err := discovery.New(cfg)
	if err != nil {
		panic("e2e: " + err.Error()) // the configuration is fixed: a bug
	}
	return d
}

// New starts the network for a test; it stops when the test ends.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	e, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// Close stops the network.
func (e *Env) Close() { e.Net.Close() }

// Start starts the network (for Examples); Close stops it.
func Start(opts Options) (e *Env, err error) {
	n, err := testnet.Start()
	if err != nil {
		return nil, err
	}
	e = &Env{Net: n, Clock: testnet.NewClock(time.Now().Truncate(time.Second))}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	tr := e.Net.Client().Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	e.Client = &http.Client{Transport: tr, Timeout: 30 * time.Second}

	for _, a := range []struct {
		dst  **authority.Authority
		id   string
		mode pass.TrustMode
	}{
		{&e.Enterprise, EnterpriseID, pass.TrustEnterprise},
		{&e.ServiceAuthority, ServiceAuthID, pass.TrustService},
		{&e.Federated, FederatedID, pass.TrustFederated},
		{&e.Federated2, Federated2ID, pass.TrustFederated},
	} {
		if *a.dst, err = e.newAuthority(opts, a.id, a.mode); err != nil {
			return nil, err
		}
	}
	e.Net.PublishEnterprise("corp.test", e.Enterprise.ConfigurationURL())
	e.Net.PublishEnterprise("none.test", "none")
	e.Net.Serve("broken-idp.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"version":"0.1","authority":"https://broken-idp.test"}`) // no trust_mode, no endpoints
	}))
	e.Net.PublishEnterprise("broken.test", "https://broken-idp.test/config")

	cfg := service.Config{
		Origin:           AppOrigin,
		Name:             "Tickets",
		ServiceAuthority: &pass.AuthorityRef{Authority: ServiceAuthID, AuthorityConfigurationURL: e.ServiceAuthority.ConfigurationURL()},
		TrustedFederated: []pass.AuthorityRef{
			{Authority: FederatedID, AuthorityConfigurationURL: e.Federated.ConfigurationURL()},
			{Authority: Federated2ID, AuthorityConfigurationURL: e.Federated2.ConfigurationURL()},
		},
		Scopes:     Scopes,
		Discovery:  e.NewDiscovery(),
		HTTPClient: e.Client,
		Now:        e.Clock.Now,
	}
	if opts.Service != nil {
		opts.Service(&cfg)
	}
	svcs, err := deploy.Services(e.Net, cfg)
	if err != nil {
		return nil, err
	}
	e.Service = svcs[0]
	mux := http.NewServeMux()
	mux.Handle("/agentpass/", e.Service)
	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := service.DelegationFrom(r.Context())
		out := map[string]any{"user": d.User, "agent": d.Agent, "scope": d.Scope}
		if len(d.Chain) > 0 { // a sub-agent: who acts for whom
			var chain []string
			for _, a := range d.Chain {
				chain = append(chain, a.Sub)
			}
			out["chain"] = chain
		}
		httpx.WriteJSON(w, http.StatusOK, out)
	})
	mux.Handle("GET /api/tickets", e.Service.Middleware(service.RequireScope("tickets:read")(whoami)))
	mux.Handle("POST /api/tickets", e.Service.Middleware(service.RequireScope("tickets:write")(whoami)))
	mux.Handle("/tickets", e.Service.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := service.DelegationFrom(r.Context())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>Tickets</title><h1 id=user>Logged in as %s</h1>", html.EscapeString(d.User))
	})))
	e.Net.Serve(AppHost, mux)
	e.Net.PublishService(AppHost, e.Service.ConfigurationURL())
	return e, nil
}

func (e *Env) newAuthority(opts Options, id string, mode pass.TrustMode) (*authority.Authority, error) {
	cfg := authority.Config{
		Identifier:  id,
		TrustMode:   mode,
		Approver:    opts.Approver, // nil: deploy approves everything
		Discovery:   e.NewDiscovery(),
		HTTPClient:  e.Client,
		Now:         e.Clock.Now,
		PollAfter:   100 * time.Millisecond,
		ApprovalURL: func(rid string) string { return id + "/approve/" + rid },
	}
	if opts.Authority != nil {
		opts.Authority(&cfg)
	}
	as, err := deploy.Authorities(e.Net, cfg)
	if err != nil {
		return nil, err
	}
	host, _ := pass.Host(id)
	e.Net.Serve(host, as[0])
	return as[0], nil
}
