package conformance_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/pass/conformance"
	"github.com/agentpass-go/agentpass/service"
)

const (
	user       = "alex@corp.test"
	idpID      = "https://idp.corp.test"
	appOrigin  = "https://app.test"
	kitOrigin1 = "https://kit-a.test"
	kitOrigin2 = "https://kit-b.test"
)

// ours is a network of our own parties: an Enterprise Authority for
// corp.test, a Service trusting it, and the kit's Service on two hosts.
type ours struct {
	n    *testnet.Network
	auth *authority.Authority
	svc  *service.Service
	kit  *conformance.KitService
}

// approver decides through the Authority's own API, as an operator tool
// would.
type approver struct{ a *authority.Authority }

func (p approver) Approve(ctx context.Context, r conformance.Pending) error {
	_, err := p.a.Decide(ctx, r.MissionID, authority.Decision{Outcome: authority.Approve, DecidedBy: "conformance-test", MaxDepth: 2})
	return err
}

// approveAll approves every request at once, with the right to delegate
// two generations deep.
func approveAll() authority.Approver {
	return authority.ApproverFunc(func(context.Context, *authority.Request) (authority.Decision, error) {
		return authority.Decision{Outcome: authority.Approve, DecidedBy: "policy:conformance", MaxDepth: 2}, nil
	})
}

func (p approver) Suspend(ctx context.Context, r conformance.Pending) error {
	_, err := p.a.Suspend(ctx, r.MissionID, "conformance-test", "suspension check")
	return err
}

func (p approver) Resume(ctx context.Context, r conformance.Pending) error {
	_, err := p.a.Resume(ctx, r.MissionID, "conformance-test")
	return err
}

func (p approver) Revoke(ctx context.Context, r conformance.Pending) error {
	if r.MissionID == "" {
		return errors.ErrUnsupported
	}
	_, err := p.a.Revoke(ctx, r.MissionID, "conformance-test", "revocation check")
	return err
}

// wrap lets a test break a party: nil keeps the handler.
type wrap func(http.Handler) http.Handler

func keep(h http.Handler) http.Handler { return h }

func newOurs(t *testing.T, approve authority.Approver, wrapAuth, wrapSvc wrap) *ours {
	t.Helper()
	n := testnet.New(t)
	// Every extension on: a template compiler (and so the compile
	// extension), stages, delegation, missions, and events pushed to the
	// Service.
	templates, err := authority.NewTemplates("conformance-1", []authority.Template{{
		ID: "reading", Version: "1", Any: []string{"read", "list"},
		Scopes:  []authority.ScopeSelector{{Suffix: ":read", Why: "the task reads items"}, {Suffix: ":list", Why: "the task lists items"}},
		Exclude: []authority.ScopeSelector{{Suffix: ":search", Why: "the task searches nothing"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	acfg := authority.Config{
		Identifier: idpID, TrustMode: pass.TrustEnterprise, Approver: approve, PollAfter: 50 * time.Millisecond,
		RateLimits: authority.RateLimits{Issuance: deploy.Unlimited(), Status: deploy.Unlimited()},
		Compiler:   templates,
	}
	auths, err := deploy.Authorities(n, acfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Serve("idp.corp.test", wrapAuth(auths[0]))
	n.PublishEnterprise("corp.test", auths[0].ConfigurationURL())
	n.PublishEnterprise("locked.test", "none")
	n.PublishEnterprise("broken.test", "https://idp.corp.test/no-such-configuration")
	svcs, err := deploy.Services(n, service.Config{
		Origin: appOrigin, Name: "App", Scopes: []pass.ScopeInfo{{Name: "items:read", Effect: "read"}, {Name: "items:list", Effect: "read"}},
		CheckInterval: 100 * time.Millisecond, EventDelivery: pass.DeliveryPush,
		RateLimits: service.RateLimits{Resolve: deploy.Unlimited(), Initialize: deploy.Unlimited(),
			Redeem: deploy.Unlimited(), AvailableScopes: deploy.Unlimited()},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/agentpass/", svcs[0])
	mux.Handle("GET /api/items", svcs[0].Middleware(service.RequireScope("items:read")(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			httpx.WriteJSON(w, http.StatusOK, map[string]any{"items": []string{}})
		}))))
	n.Serve("app.test", wrapSvc(mux))
	n.PublishService("app.test", svcs[0].ConfigurationURL())
	kit, err := conformance.NewKitService(kitOrigin1, kitOrigin2)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{kitOrigin1, kitOrigin2} {
		host := strings.TrimPrefix(o, "https://")
		n.Serve(host, kit)
		n.PublishService(host, kit.ConfigurationURL(o))
	}
	return &ours{n: n, auth: auths[0], svc: svcs[0], kit: kit}
}

func (o *ours) config() conformance.Config {
	return conformance.Config{
		ServiceOrigin: appOrigin, User: user, Approver: approver{o.auth},
		DisabledUser: "eve@locked.test", BrokenUser: "lee@broken.test",
		ServiceAPI: appOrigin + "/api/items", RevocationWait: 10 * time.Second,
		KitService: o.kit, HTTPClient: o.n.Client(), Discovery: o.n.Discovery(),
		InsecureAllowPrivateNetworks: true, ApprovalTimeout: 10 * time.Second,
	}
}

// Against our own parties every check passes or skips for a stated reason;
// none fails.
func TestOurPartiesConform(t *testing.T) {
	o := newOurs(t, approveAll(), keep, keep)
	rep, err := conformance.Run(t.Context(), o.config())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = rep.WriteText(&b)
	t.Log("\n" + b.String())
	for _, r := range rep.Results {
		if r.Outcome == conformance.Fail || r.Outcome == conformance.Warn {
			t.Errorf("%s %s %q: %s: %s", r.Outcome, r.ID, r.Name, r.Got, exchanges(r))
		}
	}
	var js strings.Builder
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, member := range []string{`\"bearer_token\":\"`, `\"value\":\"`, `\"initialization_url\":\"`} {
		for rest := js.String(); ; {
			i := strings.Index(rest, member)
			if i < 0 {
				break
			}
			rest = rest[i+len(member):]
			if !strings.HasPrefix(rest, "[redacted]") && !strings.HasPrefix(rest, "conformance-unknown-") {
				t.Errorf("the report shows a secret: %s%.40s", member, rest)
			}
		}
	}
	if rep.Count(conformance.Pass) < 30 {
		t.Errorf("only %d checks passed", rep.Count(conformance.Pass))
	}
}

func exchanges(r conformance.Result) string {
	var b strings.Builder
	for _, x := range r.Exchanges {
		b.WriteString("\n  " + x.Method + " " + x.URL + " " + x.Request + " → " + x.Error)
		if x.Status != 0 {
			b.WriteString(http.StatusText(x.Status) + " " + x.Response)
		}
	}
	return b.String()
}
