// Package sandbox builds the example AgentPass network on a testnet: an
// Enterprise Authority for two domains (one allowing Service Authorities, one
// forbidding them), a Federated Authority, a Service Authority, and the
// to-do Service trusting them, plus DNS records for every resolution branch.
// The demo drives it once; the devnet keeps it running.
package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/examples/internal/todoapp"
	"github.com/agentpass-go/agentpass/internal/testnet"
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
	// PreferServiceAuthority makes the Service offer its own Authority
	// where policy allows it.
	PreferServiceAuthority bool
	// Logger receives every party's audit log; nil discards.
	Logger *slog.Logger
	// Now is the clock of every party; nil means time.Now.
	Now func() time.Time
	// EnterpriseStore, FederatedStore, ServiceAuthorityStore and
	// ServiceStore replace the in-memory stores (the devnet's -postgres).
	EnterpriseStore, FederatedStore, ServiceAuthorityStore authority.Store
	ServiceStore                                           service.Store
	// OnPending is called for every request left to a person, by any
	// Authority of the sandbox.
	OnPending func(a *authority.Authority, r authority.Request)
}

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
	dcfg := n.DiscoveryConfig()
	dcfg.Now = now
	disc, err := discovery.New(dcfg)
	if err != nil {
		return nil, err
	}
	s := &Sandbox{Net: n}
	onPending := func(a **authority.Authority) func(context.Context, authority.Request) {
		return func(_ context.Context, r authority.Request) {
			if opts.OnPending != nil {
				opts.OnPending(*a, r)
			}
		}
	}
	newAuthority := func(target **authority.Authority, id string, mode pass.TrustMode, allowSA *bool, store authority.Store) error {
		keys, err := dpop.GenerateKeySet()
		if err != nil {
			return err
		}
		a, err := authority.New(authority.Config{
			Identifier:              id,
			TrustMode:               mode,
			Keys:                    keys,
			Store:                   store,
			Approver:                Rules(),
			AllowServiceAuthorities: allowSA,
			Discovery:               disc,
			HTTPClient:              n.Client(),
			Now:                     now,
			Logger:                  logger.With("party", id),
			OnPending:               onPending(target),
		})
		if err != nil {
			return fmt.Errorf("sandbox: authority %s: %w", id, err)
		}
		*target = a
		return nil
	}
	yes, no := true, false
	if err := newAuthority(&s.Enterprise, "https://"+EnterpriseHost+"/corp", pass.TrustEnterprise, &yes, opts.EnterpriseStore); err != nil {
		return nil, err
	}
	if err := newAuthority(&s.EnterpriseStrict, "https://"+EnterpriseHost+"/strict", pass.TrustEnterprise, &no, opts.EnterpriseStore); err != nil {
		return nil, err
	}
	if err := newAuthority(&s.Federated, "https://"+FederatedHost, pass.TrustFederated, nil, opts.FederatedStore); err != nil {
		return nil, err
	}
	if err := newAuthority(&s.ServiceAuthority, "https://"+TodoHost+"/authority", pass.TrustService, nil, opts.ServiceAuthorityStore); err != nil {
		return nil, err
	}

	// The to-do Service trusts its own Authority and the Federated one.
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		return nil, err
	}
	scopes := []pass.ScopeInfo{
		{Name: todoapp.ScopeRead, Description: "Read your to-do items"},
		{Name: todoapp.ScopeWrite, Description: "Add and change to-do items"},
		{Name: todoapp.ScopeDelete, Description: "Delete to-do items"},
	}
	svc, err := service.New(service.Config{
		Origin:                 "https://" + TodoHost,
		Name:                   "To-do (AgentPass sandbox)",
		Keys:                   keys,
		ServiceAuthority:       &pass.AuthorityRef{Authority: s.ServiceAuthority.Identifier(), AuthorityConfigurationURL: s.ServiceAuthority.ConfigurationURL()},
		TrustedFederated:       []pass.AuthorityRef{{Authority: s.Federated.Identifier(), AuthorityConfigurationURL: s.Federated.ConfigurationURL()}},
		PreferServiceAuthority: opts.PreferServiceAuthority,
		Scopes:                 scopes,
		DefaultDestination:     "/app",
		Store:                  opts.ServiceStore,
		Discovery:              disc,
		HTTPClient:             n.Client(),
		Now:                    now,
		Logger:                 logger.With("party", "https://"+TodoHost),
		CheckInterval:          opts.CheckInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: service: %w", err)
	}
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
	s.Todos.Routes(todoMux, svc.Middleware, func(scopes ...string) func(http.Handler) http.Handler { return service.RequireScope(scopes...) })
	todoMux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/app", http.StatusSeeOther) })
	s.TodoOrigin = n.Serve(TodoHost, todoMux)

	idpMux := http.NewServeMux()
	idpMux.Handle("/corp/", s.Enterprise)
	idpMux.Handle("/strict/", s.EnterpriseStrict)
	n.Serve(EnterpriseHost, idpMux)
	n.Serve(FederatedHost, s.Federated)
	n.Serve(BrokenHost, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"version":"0.1","authority":"https://broken.test","trust_mode":"enterprise"}`)) // no endpoints
	}))

	n.PublishService(TodoHost, svc.ConfigurationURL())
	n.PublishEnterprise("corp.test", s.Enterprise.ConfigurationURL())
	n.PublishEnterprise("strict.test", s.EnterpriseStrict.ConfigurationURL())
	n.PublishEnterprise("locked.test", "none")
	n.PublishEnterprise("broken.test", "https://"+BrokenHost+"/agentpass/configuration")
	return s, nil
}
