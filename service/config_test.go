package service_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// S-CFG-1, S-CFG-2, S-CFG-3, X-DNS-11: the configuration document is served
// at the URL published in DNS, validates against the schema and carries a
// finite Cache-Control max-age.
func TestConfigurationDocument(t *testing.T) {
	e := newEnv(t, nil)
	u, err := e.discovery().DiscoverService(t.Context(), appURL)
	if err != nil {
		t.Fatalf("DiscoverService: %v", err)
	}
	if u.ConfigurationURL != e.svc.ConfigurationURL() {
		t.Errorf("TXT points at %s, want %s", u.ConfigurationURL, e.svc.ConfigurationURL())
	}
	r := e.do(http.MethodGet, e.svc.ConfigurationURL(), nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET configuration = %d %s", r.status, r.body)
	}
	validJSON(t, r.body, "service-configuration.schema.json", "")
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=300") {
		t.Errorf("Cache-Control = %q, want max-age=300", cc)
	}
	var cfg pass.ServiceConfiguration
	if err := pass.Decode(r.body, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Service.Origin != appURL || cfg.Service.Name != "Tickets" {
		t.Errorf("service = %+v", cfg.Service)
	}
	if cfg.Trust.ServiceAuthority == nil || cfg.Trust.ServiceAuthority.Authority != e.sa.origin {
		t.Errorf("trust.service_authority = %+v", cfg.Trust.ServiceAuthority)
	}
	if len(cfg.Trust.TrustedFederatedAuthorities) != 2 {
		t.Errorf("trust.trusted_federated_authorities = %+v", cfg.Trust.TrustedFederatedAuthorities)
	}
	for _, ep := range []string{cfg.Endpoints.ResolveAuthorities, cfg.Endpoints.AvailableScopes, cfg.Endpoints.RedeemBearerToken, cfg.Endpoints.RedeemBrowserSession, cfg.JWKSURI} {
		if !strings.HasPrefix(ep, appURL+"/agentpass/") {
			t.Errorf("endpoint %s is not under the base URL", ep)
		}
	}
	// S-CFG-5: unsupported Accept.
	if r := e.do(http.MethodGet, e.svc.ConfigurationURL(), http.Header{"Accept": {"text/html"}}, nil); r.status != http.StatusNotAcceptable {
		t.Errorf("Accept: text/html = %d, want 406", r.status)
	} else {
		validError(t, r)
	}
	if r := e.do(http.MethodPost, e.svc.ConfigurationURL(), nil, nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST configuration = %d, want 405", r.status)
	}
	if r := e.do(http.MethodGet, appURL+"/agentpass/nope", nil, nil); r.status != http.StatusNotFound {
		t.Errorf("unknown endpoint = %d, want 404", r.status)
	} else {
		validError(t, r)
	}
}

// S-CFG-4: the JWKS publishes the current and retiring keys, public only.
func TestJWKS(t *testing.T) {
	e := newEnv(t, nil)
	old := e.cfg.Keys.Current()
	next, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Keys.Rotate(next)
	r := e.do(http.MethodGet, e.svc.Configuration().JWKSURI, nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET jwks = %d", r.status)
	}
	body := string(r.body)
	for _, k := range []*dpop.Key{old, next} {
		if !strings.Contains(body, k.KeyID()) {
			t.Errorf("JWKS lacks key %s", k.KeyID())
		}
	}
	if strings.Contains(body, `"d":`) {
		t.Errorf("JWKS contains private key material: %s", body)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	good := func() service.Config {
		return service.Config{Origin: "https://app.example.com", Keys: keys, Scopes: testScopes, Discovery: newEnvlessDiscovery(t)}
	}
	sa := &pass.AuthorityRef{Authority: "https://sa.example.com", AuthorityConfigurationURL: "https://sa.example.com/ap"}
	tests := []struct {
		name   string
		mutate func(*service.Config)
	}{
		{"no origin", func(c *service.Config) { c.Origin = "" }},
		{"http origin", func(c *service.Config) { c.Origin = "http://app.example.com" }},
		{"origin with path", func(c *service.Config) { c.Origin = "https://app.example.com/x" }},
		{"base url other origin", func(c *service.Config) { c.BaseURL = "https://other.example.com" }},
		{"base url with query", func(c *service.Config) { c.BaseURL = "https://app.example.com/x?y" }},
		{"no keys", func(c *service.Config) { c.Keys = nil }},
		{"no scopes", func(c *service.Config) { c.Scopes = nil }},
		{"wildcard scope", func(c *service.Config) { c.Scopes = []pass.ScopeInfo{{Name: "*"}} }},
		{"duplicate scope", func(c *service.Config) { c.Scopes = []pass.ScopeInfo{{Name: "a"}, {Name: "a"}} }},
		{"bad service authority", func(c *service.Config) { c.ServiceAuthority = &pass.AuthorityRef{Authority: "http://x"} }},
		{"duplicate federated", func(c *service.Config) {
			c.TrustedFederated = []pass.AuthorityRef{*sa, *sa}
		}},
		{"require without service authority", func(c *service.Config) { c.AuthorityChoice = service.RequireServiceAuthority }},
		{"unknown authority choice", func(c *service.Config) { c.AuthorityChoice = service.RequireServiceAuthority + 1 }},
		{"init ttl too long", func(c *service.Config) { c.InitTTL = 10 * 60e9 }},
		{"check interval too long", func(c *service.Config) { c.CheckInterval = 120e9 }},
		{"negative token ttl", func(c *service.Config) { c.TokenTTL = -1 }},
		{"default destination absolute", func(c *service.Config) { c.DefaultDestination = "https://evil.example/" }},
		{"default destination scheme-relative", func(c *service.Config) { c.DefaultDestination = "//evil.example/" }},
		{"path without slash", func(c *service.Config) { c.Paths.JWKS = "jwks" }},
		{"duplicate paths", func(c *service.Config) { c.Paths.JWKS = "/agentpass/configuration" }},
		{"prefix with trailing slash", func(c *service.Config) { c.Paths.Prefix = "/ap/" }},
	}
	if _, err := service.New(good()); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.mutate(&cfg)
			if _, err := service.New(cfg); err == nil {
				t.Errorf("New accepted an invalid config")
			}
		})
	}
}

// Paths and BaseURL shape every endpoint URL.
func TestPathsAndBaseURL(t *testing.T) {
	keys, _ := dpop.GenerateKeySet()
	svc, err := service.New(service.Config{
		Origin: "https://app.example.com", BaseURL: "https://app.example.com/api/", Keys: keys, Scopes: testScopes,
		Paths: service.Paths{Prefix: "/ap", JWKS: "/keys"}, Discovery: newEnvlessDiscovery(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := svc.ConfigurationURL(), "https://app.example.com/api/ap/configuration"; got != want {
		t.Errorf("ConfigurationURL = %s, want %s", got, want)
	}
	if got, want := svc.Configuration().JWKSURI, "https://app.example.com/api/keys"; got != want {
		t.Errorf("jwks_uri = %s, want %s", got, want)
	}
}

// New keeps its own copies of Config's slices and pointers (#12 item 5): a
// caller that reuses or changes them afterwards changes nothing in the
// running Service, which resolves federated users as configured at New.
func TestNewClonesConfig(t *testing.T) {
	var fed []pass.AuthorityRef
	e := newEnv(t, func(c *service.Config) {
		c.ServiceAuthority = nil
		fed = c.TrustedFederated
	})
	want := fed[0].Authority
	fed[0].Authority = "https://rogue.test"
	r := e.resolve("alex@free.test")
	var got pass.ResolutionResponse
	if r.status != 200 || json.Unmarshal(r.body, &got) != nil || len(got.TrustedFederatedAuthorities) == 0 {
		t.Fatalf("resolve: %d %s", r.status, r.body)
	}
	if a := got.TrustedFederatedAuthorities[0].Authority; a != want {
		t.Errorf("federated Authority offered = %s, want %s as configured at New", a, want)
	}
}
