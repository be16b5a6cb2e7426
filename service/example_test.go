package service_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// The application's own account store, for the examples.
type accounts struct{ byEmail map[string]string }

func (a *accounts) findOrCreate(email string) string {
	if id, ok := a.byEmail[email]; ok {
		return id
	}
	id := fmt.Sprintf("user-%d", len(a.byEmail)+1)
	a.byEmail[email] = id
	return id
}

// A Service in a few lines: serve the AgentPass endpoints next to the
// application, and protect the API with the middleware.
func Example() {
	keys, err := dpop.GenerateKeySet() // in production: dpop.LoadKeySet("service-key.pem")
	if err != nil {
		panic(err)
	}
	// Discovery uses the system's resolvers when nil; the examples name one
	// so they run anywhere.
	disc, err := discovery.New(discovery.Config{Nameservers: []string{"127.0.0.1:53"}})
	if err != nil {
		panic(err)
	}
	users := &accounts{byEmail: map[string]string{}}
	svc, err := service.New(service.Config{
		Origin: "https://tickets.example.com",
		Name:   "Tickets",
		Keys:   keys,
		Scopes: []pass.ScopeInfo{
			{Name: "tickets:read", Description: "Read tickets"},
			{Name: "tickets:write", Description: "Create and update tickets"},
		},
		// Users whose domain publishes no Enterprise Authority may
		// delegate through this Federated Authority.
		TrustedFederated: []pass.AuthorityRef{{
			Authority:                 "https://approve.example.net",
			AuthorityConfigurationURL: "https://approve.example.net/agentpass/configuration",
		}},
		// Automated signup: the first delegation of a user creates the account.
		OnDelegation: func(ctx context.Context, d *service.Delegation) error {
			users.findOrCreate(d.User)
			return nil
		},
		Discovery: disc,
	})
	if err != nil {
		panic(err)
	}

	listTickets := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := service.DelegationFrom(r.Context())
		fmt.Fprintf(w, "tickets of %s, read by agent %s\n", d.User, d.Agent)
	})
	mux := http.NewServeMux()
	mux.Handle("/agentpass/", svc) // configuration, JWKS, resolution, scopes, redemption, initialization
	mux.Handle("GET /api/tickets", svc.Middleware(service.RequireScope("tickets:read")(listTickets)))

	fmt.Println("TXT _agentpass-service.tickets.example.com:", svc.ConfigurationURL())

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", svc.ConfigurationURL(), nil))
	cfg := new(pass.ServiceConfiguration)
	if err := pass.Decode(rec.Body.Bytes(), cfg); err != nil {
		panic(err)
	}
	fmt.Println("redeem bearer tokens at", cfg.Endpoints.RedeemBearerToken)

	// An agent without a credential is turned away.
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "https://tickets.example.com/api/tickets", nil))
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output:
	// TXT _agentpass-service.tickets.example.com: https://tickets.example.com/agentpass/configuration
	// redeem bearer tokens at https://tickets.example.com/agentpass/redeem-bearer-token
	// 401 Bearer realm="agentpass"
}

// RequireScope answers 403 naming the missing scope. Handlers behind the
// middleware read the delegation with DelegationFrom; WithDelegation lets
// tests of such handlers run without a Service.
func ExampleRequireScope() {
	update := service.RequireScope("tickets:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "updated\n")
	}))
	for _, scope := range []pass.Scope{{"tickets:read"}, {"tickets:read", "tickets:write"}} {
		req := httptest.NewRequest("POST", "https://tickets.example.com/api/tickets/1", nil)
		req = req.WithContext(service.WithDelegation(req.Context(), &service.Delegation{User: "alex@example.com", Agent: "build-bot", Scope: scope}))
		rec := httptest.NewRecorder()
		update.ServeHTTP(rec, req)
		fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	// Output:
	// 403 {"error":{"code":"insufficient_scope","message":"the delegation lacks scope \"tickets:write\""}}
	// 200 updated
}
