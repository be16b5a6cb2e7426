// Package sandbox builds the example AgentPass network on a testnet, with a
// party for every resolution branch; the demo drives it once, the devnet
// keeps it running.
//
// # Overview
//
// [Build] starts an Enterprise Authority for two domains (one allowing
// Service Authorities, one forbidding them), a Federated Authority, a
// Service Authority, and the to-do Service trusting them, plus the DNS
// records of every branch: one test user per branch ([UserEnterprise],
// [UserStrict], [UserNoRecord], [UserNone], [UserBroken]). Its parties are
// built by internal/testnet/deploy, like every test network's; this
// package only chooses the topology and the example policy ([Rules]).
//
// # Usage
//
//	n, err := testnet.Start()
//	sb, err := sandbox.Build(n, sandbox.Options{Logger: logger, ApprovalPages: true})
//	// a Harness on n.Client() and n.Discovery() now acts for sandbox.UserEnterprise
//	// at sb.TodoOrigin; sb.Enterprise.Pending lists what waits for a person
package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/console"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/examples/internal/todoapp"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// Host names of the sandbox.
const (
	TodoHost       = "todo.test"      // the to-do Service (and its Service Authority under /authority)
	EnterpriseHost = "idp.corp.test"  // the Enterprise Authority (two configurations)
	FederatedHost  = "approvals.test" // the Federated Authority
	BrokenHost     = "broken.test"    // serves an invalid enterprise configuration
)

// Test users, one per resolution branch.
const (
	UserEnterprise = "alex@corp.test"  // Enterprise Authority, Service Authorities allowed
	UserStrict     = "sam@strict.test" // Enterprise Authority, Service Authorities forbidden
	UserNoRecord   = "kim@gmail.test"  // no enterprise record: Service Authority or federated
	UserNone       = "eve@locked.test" // "_agentpass" record is "none": delegation disabled
	UserBroken     = "lee@broken.test" // enterprise record points at an invalid configuration
)

// Options tune the sandbox.
type Options struct {
	// CheckInterval is how often the Service re-checks a delegation; the
	// demo shortens it so a revocation shows quickly.
	CheckInterval time.Duration
	// AuthorityChoice is the Service's service.Config.AuthorityChoice.
	AuthorityChoice service.AuthorityChoice
	// Logger receives every party's audit log; nil discards.
	Logger *slog.Logger
	// Now is the clock of every party; nil means time.Now.
	Now func() time.Time
	// TracerProvider, MeterProvider and WrapTransport are given to every
	// Authority and the Service (examples/otel); nil means otel's globals
	// and no wrapper.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	WrapTransport  func(http.RoundTripper) http.RoundTripper
	// EnterpriseStore (corp.test), EnterpriseStrictStore (strict.test),
	// FederatedStore, ServiceAuthorityStore and ServiceStore replace the
	// in-memory stores (the devnet's -postgres); nil means a new in-memory
	// store. Each Authority needs a store of its own: a store's listings
	// (Pending, Authorizations) do not tell Authorities apart.
	EnterpriseStore, EnterpriseStrictStore, FederatedStore, ServiceAuthorityStore authority.Store
	ServiceStore                                                                  service.Store
	// ReplayCache is the replay cache of every party, Authorities and
	// Service alike (the devnet's -postgres: one dpoppg table); nil means
	// each party's in-memory default.
	ReplayCache dpop.ReplayCache
	// RequireHardenedProofs makes every Authority and the Service refuse
	// Harnesses that do not list the holder-binding extension (the
	// devnet's -require-hardened-proofs); false lets plain v0.1 Harnesses
	// in, as other implementations need.
	RequireHardenedProofs bool
	// EventDelivery is the to-do Service's service.Config.EventDelivery:
	// with pass.DeliveryPush its Authorities push revocations to it at
	// once, provided the application runs each Authority's
	// RunEventTransmitter.
	EventDelivery string
	// OnPending is called for every request left to a person, by any
	// Authority of the sandbox.
	OnPending func(a *authority.Authority, r authority.Request)

	// ExplicitPorts serves every host on its own loopback port with the
	// port in its origin ("https://todo.test:8443"), and answers A queries
	// for the hosts with 127.0.0.1 in the network's DNS server, so tools
	// outside the process can reach them (the devnet). If false, origins
	// are "https://host", reachable only through the network's client.
	ExplicitPorts bool
	// Addrs chooses the listen address of a host ("127.0.0.1:8443") when
	// ExplicitPorts is set; a host missing from it gets "127.0.0.1:0".
	Addrs map[string]string

	// ApprovalPages mounts an approval console (package console, signed in
	// through InsecureLoopback) for
	// every Authority at {identifier}/approvals and sets the Authority's
	// ApprovalURL, so Harnesses show its link while a request is pending.
	ApprovalPages bool
	// AdminToken enables the approval consoles' admin JSON API for this
	// bearer token (at least 8 bytes), recorded as "api:devnet-admin".
	AdminToken string
	// PollAfter is the Authorities' poll_after_ms hint; zero means
	// 2 seconds. Tests shorten it.
	PollAfter time.Duration
	// Compiler, when set, is every Authority's scope compiler: requests
	// get a proposal, and the approval pages show it with its diff.
	Compiler authority.Compiler
}

// Hosts lists the host names the sandbox serves.
var Hosts = []string{TodoHost, EnterpriseHost, FederatedHost, BrokenHost}

// Sandbox is the running example network.
type Sandbox struct {
	Net *testnet.Network

	Enterprise       *authority.Authority // for corp.test (allows Service Authorities)
	EnterpriseStrict *authority.Authority // for strict.test (forbids them)
	Federated        *authority.Authority
	ServiceAuthority *authority.Authority
	Service          *service.Service
	Todos            *todoapp.App

	// Origins and configuration URLs, for the manifest.
	TodoOrigin string
	// Origins maps each host of Hosts to its origin.
	Origins map[string]string
	// Pages maps an Authority identifier to its approval page
	// (Options.ApprovalPages).
	Pages map[string]*console.Console
}

// ApprovalPage returns a's approval page, or nil.
func (s *Sandbox) ApprovalPage(a *authority.Authority) *console.Console {
	return s.Pages[a.Identifier()]
}

// Authorities returns every Authority of the sandbox.
func (s *Sandbox) Authorities() []*authority.Authority {
	return []*authority.Authority{s.Enterprise, s.EnterpriseStrict, s.Federated, s.ServiceAuthority}
}

// Rules is the approval policy every sandbox Authority applies: read-only
// scopes are approved automatically; anything else waits for a person.
func Rules() *authority.RuleSet {
	return authority.Rules(
		authority.Rule{
			Name:    "auto-approve-read-only",
			Outcome: authority.Approve,
			Grant:   authority.ScopesWithSuffix(":read"),
			Match:   func(r *authority.Request) bool { return !mentionsChange(r.TaskDescription) },
		},
		authority.Rule{Name: "ask-a-person", Outcome: authority.Pending, Grant: authority.AllScopes()},
	)
}

// mentionsChange is the (deliberately simple) test of the example policy:
// a task that says it will add, change or delete something needs a person.
func mentionsChange(desc string) bool {
	d := strings.ToLower(desc)
	for _, w := range []string{"add", "create", "delete", "remove", "change", "write", "update"} {
		if strings.Contains(d, w) {
			return true
		}
	}
	return false
}

// Build starts every party on n and publishes the DNS records.
func Build(n *testnet.Network, opts Options) (*Sandbox, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	disc := n.DiscoveryAt(now)
	s := &Sandbox{Net: n, Origins: map[string]string{}, Pages: map[string]*console.Console{}}
	// Serve every host first (with a placeholder), so its origin is known
	// before the parties that name it are built; the real handlers replace
	// the placeholders below.
	serve := func(host string, h http.Handler) (string, error) {
		if !opts.ExplicitPorts {
			return n.Serve(host, h), nil
		}
		addr := opts.Addrs[host]
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		o, err := n.ServePort(host, addr, h)
		if err != nil {
			return "", fmt.Errorf("sandbox: serving %s on %s: %w", host, addr, err)
		}
		return o, nil
	}
	for _, h := range Hosts {
		o, err := serve(h, http.NotFoundHandler())
		if err != nil {
			return nil, err
		}
		s.Origins[h] = o
	}
	approvalBase := func(id string) string { return id + "/approvals" }
	onPending := func(a **authority.Authority) func(context.Context, authority.Request) {
		return func(_ context.Context, r authority.Request) {
			if opts.OnPending != nil {
				opts.OnPending(*a, r)
			}
		}
	}
	newAuthority := func(target **authority.Authority, id string, mode pass.TrustMode, allowSA *bool, store authority.Store) error {
		var approvalURL func(string) string
		if opts.ApprovalPages {
			approvalURL = func(rid string) string { return console.RequestURL(approvalBase(id), rid) }
		}
		as, err := deploy.Authorities(n, authority.Config{
			ApprovalURL: approvalURL,
			PollAfter:   opts.PollAfter,
			Identifier:  id,
			TrustMode:   mode,
			Store:       store,
			ReplayCache: opts.ReplayCache,
			Approver:    Rules(),
			// Stage gates follow the to-do scopes' suffixes.
			Effects:                 authority.EffectRules{":read": authority.EffectRead, ":write": authority.EffectWrite, ":delete": authority.EffectDelete},
			AllowServiceAuthorities: allowSA,
			RequireHardenedProofs:   opts.RequireHardenedProofs,
			Discovery:               disc,
			Now:                     now,
			Logger:                  logger.With("party", id),
			TracerProvider:          opts.TracerProvider,
			MeterProvider:           opts.MeterProvider,
			WrapTransport:           opts.WrapTransport,
			OnPending:               onPending(target),
			Compiler:                opts.Compiler,
		})
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		a := as[0]
		*target = a
		if opts.ApprovalPages {
			cfg := console.Config{
				Authority: a, BaseURL: approvalBase(id), Title: "Approvals · " + strings.TrimPrefix(id, "https://"),
				Authenticator: InsecureLoopback{}, Now: now, Logger: logger.With("party", id, "component", "approvals"),
			}
			if opts.AdminToken != "" {
				if cfg.APIAuthenticator, err = console.NewTokenAuthenticator(console.Token{
					Secret: opts.AdminToken, Subject: "api:devnet-admin", Domains: []string{"*"}}); err != nil {
					return fmt.Errorf("sandbox: approval page of %s: %w", id, err)
				}
			}
			page, err := console.New(cfg)
			if err != nil {
				return fmt.Errorf("sandbox: approval page of %s: %w", id, err)
			}
			s.Pages[id] = page
		}
		return nil
	}
	yes, no := true, false
	if err := newAuthority(&s.Enterprise, s.Origins[EnterpriseHost]+"/corp", pass.TrustEnterprise, &yes, opts.EnterpriseStore); err != nil {
		return nil, err
	}
	if err := newAuthority(&s.EnterpriseStrict, s.Origins[EnterpriseHost]+"/strict", pass.TrustEnterprise, &no, opts.EnterpriseStrictStore); err != nil {
		return nil, err
	}
	if err := newAuthority(&s.Federated, s.Origins[FederatedHost], pass.TrustFederated, nil, opts.FederatedStore); err != nil {
		return nil, err
	}
	if err := newAuthority(&s.ServiceAuthority, s.Origins[TodoHost]+"/authority", pass.TrustService, nil, opts.ServiceAuthorityStore); err != nil {
		return nil, err
	}

	// The to-do Service trusts its own Authority and the Federated one.
	scopes := []pass.ScopeInfo{
		{Name: todoapp.ScopeRead, Description: "Read your to-do items"},
		{Name: todoapp.ScopeWrite, Description: "Add and change to-do items"},
		{Name: todoapp.ScopeDelete, Description: "Delete to-do items"},
	}
	svcs, err := deploy.Services(n, service.Config{
		Origin:                s.Origins[TodoHost],
		Name:                  "To-do (AgentPass sandbox)",
		ServiceAuthority:      &pass.AuthorityRef{Authority: s.ServiceAuthority.Identifier(), AuthorityConfigurationURL: s.ServiceAuthority.ConfigurationURL()},
		TrustedFederated:      []pass.AuthorityRef{{Authority: s.Federated.Identifier(), AuthorityConfigurationURL: s.Federated.ConfigurationURL()}},
		AuthorityChoice:       opts.AuthorityChoice,
		Scopes:                scopes,
		DefaultDestination:    "/app",
		Store:                 opts.ServiceStore,
		ReplayCache:           opts.ReplayCache,
		Discovery:             disc,
		Now:                   now,
		Logger:                logger.With("party", s.Origins[TodoHost]),
		TracerProvider:        opts.TracerProvider,
		MeterProvider:         opts.MeterProvider,
		WrapTransport:         opts.WrapTransport,
		CheckInterval:         opts.CheckInterval,
		RequireHardenedProofs: opts.RequireHardenedProofs,
		EventDelivery:         opts.EventDelivery,
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	svc := svcs[0]
	s.Service = svc
	s.Todos = todoapp.New(func(r *http.Request) (todoapp.Caller, bool) {
		d, ok := service.DelegationFrom(r.Context())
		if !ok {
			return todoapp.Caller{}, false
		}
		return todoapp.Caller{User: d.User, Agent: d.Agent}, true
	}, UserEnterprise, UserStrict, UserNoRecord)

	todoMux := http.NewServeMux()
	todoMux.Handle("/agentpass/", svc)
	todoMux.Handle("/authority/", s.ServiceAuthority)
	s.mountPage(todoMux, s.ServiceAuthority)
	s.Todos.Routes(todoMux, svc.Middleware, func(scopes ...string) func(http.Handler) http.Handler { return service.RequireScope(scopes...) })
	todoMux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/app", http.StatusSeeOther) })
	s.TodoOrigin = s.Origins[TodoHost]
	if _, err := serve(TodoHost, todoMux); err != nil {
		return nil, err
	}

	idpMux := http.NewServeMux()
	idpMux.Handle("/corp/", s.Enterprise)
	idpMux.Handle("/strict/", s.EnterpriseStrict)
	s.mountPage(idpMux, s.Enterprise)
	s.mountPage(idpMux, s.EnterpriseStrict)
	fedMux := http.NewServeMux()
	fedMux.Handle("/", s.Federated)
	s.mountPage(fedMux, s.Federated)
	brokenConfig := []byte(`{"version":"0.1","authority":"` + s.Origins[BrokenHost] + `","trust_mode":"enterprise"}`) // no endpoints
	for host, h := range map[string]http.Handler{
		EnterpriseHost: idpMux,
		FederatedHost:  fedMux,
		BrokenHost: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(brokenConfig)
		}),
	} {
		if _, err := serve(host, h); err != nil {
			return nil, err
		}
	}

	n.PublishService(TodoHost, svc.ConfigurationURL())
	n.PublishEnterprise("corp.test", s.Enterprise.ConfigurationURL())
	n.PublishEnterprise("strict.test", s.EnterpriseStrict.ConfigurationURL())
	n.PublishEnterprise("locked.test", "none")
	n.PublishEnterprise("broken.test", s.Origins[BrokenHost]+"/agentpass/configuration")
	return s, nil
}

// mountPage mounts a's approval page on mux, when there is one.
func (s *Sandbox) mountPage(mux *http.ServeMux, a *authority.Authority) {
	page := s.ApprovalPage(a)
	if page == nil {
		return
	}
	u, _ := url.Parse(page.URL())
	path := strings.TrimSuffix(u.Path, "/")
	mux.Handle(path, page)
	mux.Handle(path+"/", page)
}
