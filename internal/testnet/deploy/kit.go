package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// Names of the kit's network.
const (
	KitServiceHost = "app.test"
	KitAuthority   = "https://idp.corp.test"
	KitDomain      = "corp.test"
	KitUser        = "alex@" + KitDomain
)

// KitScopes are the Service's scopes when the kit's user names none.
var KitScopes = []pass.ScopeInfo{
	{Name: "read", Description: "Read"},
	{Name: "write", Description: "Change"},
}

// KitOptions configure the network behind the public test kits
// (servicetest, harnesstest, authoritytest).
type KitOptions struct {
	// Handler is the application behind the Service's middleware. If nil,
	// a handler answering the delegation as JSON.
	Handler http.Handler
	// Scopes the Service defines. If empty, KitScopes.
	Scopes []pass.ScopeInfo
	// Service adjusts the Service configuration before service.New.
	Service func(*service.Config)
	// Authority is the user's Authority configuration. If nil, an
	// Enterprise Authority at KitAuthority for the domain of User.
	Authority *authority.Config
	// Manual leaves every request of the default Authority for a person
	// (Authority.Decide from the test).
	Manual bool
	// Pool puts every store (the Authority's, the Service's, the shared
	// replay table) on PostgreSQL. If nil, in memory.
	Pool *pgxpool.Pool
	// Harness adjusts the Harness configuration before harness.New.
	Harness func(*harness.Config)
	// User is the e-mail address agents act for; an Enterprise
	// Authority is published for its domain. If empty, KitUser.
	User string
}

// Kit is a running network: one Authority, one Service around a handler,
// DNS and TLS on loopback, one clock, and clients configured for it.
type Kit struct {
	Net       *testnet.Network
	Clock     *testnet.Clock
	Authority *authority.Authority
	Service   *service.Service
	// ServiceURL is the Service origin, "https://app.test".
	ServiceURL string
	// User is an e-mail address the Authority approves for.
	User      string
	Harness   *harness.Client
	Client    *http.Client
	Discovery *discovery.Client
}

// StartKit starts a kit for t; it stops when the test ends. It fails t
// when a party cannot be built.
func StartKit(t testing.TB, o KitOptions) *Kit {
	t.Helper()
	k, err := NewKit(o)
	if err != nil {
		t.Fatalf("test network: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

// NewKit starts a kit outside a test (Examples); Close stops it.
func NewKit(o KitOptions) (*Kit, error) {
	n, err := testnet.Start()
	if err != nil {
		return nil, err
	}
	k := &Kit{Net: n, Clock: testnet.NewClock(time.Now().Truncate(time.Second)), ServiceURL: "https://" + KitServiceHost, User: KitUser}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.start(ctx, o); err != nil {
		n.Close()
		return nil, err
	}
	return k, nil
}

// Close stops every server of the kit.
func (k *Kit) Close() { k.Net.Close() }

func (k *Kit) start(ctx context.Context, o KitOptions) error {
	n := k.Net
	if o.User != "" {
		at := strings.LastIndexByte(o.User, '@')
		if at <= 0 || at == len(o.User)-1 {
			return fmt.Errorf("deploy: user %q is not an e-mail address", o.User)
		}
		k.User = o.User
	}
	domain := k.User[strings.LastIndexByte(k.User, '@')+1:]
	// Without keep-alives the network stops at once when the test ends.
	tr := n.Client().Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	k.Client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	k.Discovery = k.NewDiscovery()

	var stores Stores
	if o.Pool != nil {
		var err error
		if stores, err = Postgres(ctx, o.Pool, k.Clock.Now); err != nil {
			return err
		}
	}

	acfg := authority.Config{Identifier: KitAuthority, TrustMode: pass.TrustEnterprise}
	if o.Authority != nil {
		acfg = *o.Authority
	} else if o.Manual {
		acfg.Approver = authority.Manual{}
	}
	if acfg.Now == nil {
		acfg.Now = k.Clock.Now
	}
	if acfg.PollAfter == 0 {
		acfg.PollAfter = 100 * time.Millisecond
	}
	if acfg.HTTPClient == nil {
		acfg.HTTPClient = k.Client
	}
	if acfg.Discovery == nil {
		acfg.Discovery = k.NewDiscovery()
	}
	if acfg.ApprovalURL == nil {
		id := acfg.Identifier
		acfg.ApprovalURL = func(rid string) string { return id + "/approve/" + rid }
	}
	host, err := hostOf(acfg.BaseURL, acfg.Identifier)
	if err != nil {
		return err
	}
	if host == KitServiceHost {
		return fmt.Errorf("deploy: the Authority cannot be served on %s, the Service's host", host)
	}
	// A store of the user's configuration wins over the pool.
	ast := Stores{Authority: stores.Authority, ReplayCache: stores.ReplayCache}
	if acfg.Store != nil {
		ast.Authority = nil
	}
	if acfg.ReplayCache != nil {
		ast.ReplayCache = nil
	}
	auths, err := Authorities(n, acfg, ast)
	if err != nil {
		return err
	}
	k.Authority = auths[0]
	n.Serve(host, k.Authority)
	ref := pass.AuthorityRef{Authority: k.Authority.Identifier(), AuthorityConfigurationURL: k.Authority.ConfigurationURL()}

	scopes := o.Scopes
	if len(scopes) == 0 {
		scopes = KitScopes
	}
	scfg := service.Config{
		Origin: k.ServiceURL, Name: "Test application", Scopes: scopes,
		Discovery: k.NewDiscovery(), HTTPClient: k.Client, Now: k.Clock.Now,
	}
	switch acfg.TrustMode {
	case pass.TrustEnterprise:
		n.PublishEnterprise(domain, ref.AuthorityConfigurationURL)
	case pass.TrustFederated:
		scfg.TrustedFederated = []pass.AuthorityRef{ref}
	case pass.TrustService:
		scfg.ServiceAuthority = &ref
	}
	if o.Service != nil {
		o.Service(&scfg)
	}
	svcs, err := Services(n, scfg, Stores{Service: stores.Service, ReplayCache: stores.ReplayCache})
	if err != nil {
		return err
	}
	k.Service = svcs[0]
	app := o.Handler
	if app == nil {
		app = http.HandlerFunc(whoami)
	}
	mux := http.NewServeMux()
	mux.Handle("/agentpass/", k.Service)
	mux.Handle("/", k.Service.Middleware(app))
	n.Serve(KitServiceHost, mux)
	n.PublishService(KitServiceHost, k.Service.ConfigurationURL())

	hcfg := harness.Config{HarnessID: "test-harness", HTTPClient: k.Client, Discovery: k.NewDiscovery(), Now: k.Clock.Now, MinPoll: 100 * time.Millisecond,
		PreferredAuthority: k.Authority.Identifier()}
	if o.Harness != nil {
		o.Harness(&hcfg)
	}
	k.Harness, err = Harness(n, hcfg)
	return err
}

// NewDiscovery returns a new discovery client for the network, on its clock.
func (k *Kit) NewDiscovery() *discovery.Client {
	cfg := k.Net.DiscoveryConfig()
	cfg.HTTPClient = k.Client
	cfg.Now = k.Clock.Now
	d, err := discovery.New(cfg)
	if err != nil {
		panic("deploy: " + err.Error()) // the configuration is fixed: a bug
	}
	return d
}

// hostOf is the host an Authority is served on: that of its BaseURL, or
// of its Identifier. The network serves port 443 only.
func hostOf(base, id string) (string, error) {
	if base == "" {
		base = id
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Port() != "" {
		return "", fmt.Errorf("deploy: the Authority's %q must be https://host on the test network (no port)", base)
	}
	return strings.ToLower(u.Hostname()), nil
}

// whoami answers the delegation of the request.
func whoami(w http.ResponseWriter, r *http.Request) {
	d, _ := service.DelegationFrom(r.Context())
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"user": d.User, "agent": d.Agent, "authority": d.Authority, "scope": d.Scope})
}

// Agent acquires a pass for the kit's user (the Authority must approve
// without a person), redeems it for a bearer token with scope (nil: all
// approved) and returns a client that sends it to the Service.
func (k *Kit) Agent(ctx context.Context, scope ...string) (*http.Client, error) {
	g, err := k.Harness.Acquire(ctx, harness.Request{
		Service: k.ServiceURL, User: k.User,
		Task: pass.Task{Description: "a test of the application"},
	})
	if err != nil {
		return nil, err
	}
	var want pass.Scope
	if len(scope) > 0 {
		want = pass.Scope(scope)
	}
	tok, err := k.Harness.RedeemBearerToken(ctx, g, harness.RedeemOptions{RequestedScope: want})
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, errors.New("deploy: no token")
	}
	return tok.HTTPClient(k.Client), nil
}
