package authority_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// TestConfiguration covers A-CFG-1, A-CFG-2, A-CFG-3, A-CFG-4 and the JWKS
// (A-CFG-5): the document is schema-valid, absolute https, cacheable, and
// discovery reads it.
func TestConfiguration(t *testing.T) {
	t.Parallel()
	no := false
	e := newEnv(t, func(c *authority.Config) { c.AllowServiceAuthorities = &no })
	r := e.do(http.MethodGet, e.auth.ConfigurationURL(), nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET configuration: %d %s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=300") {
		t.Errorf("Cache-Control %q", cc)
	}
	validateSchema(t, "authority-configuration.schema.json", "", r.body)
	var cfg pass.AuthorityConfiguration
	if err := pass.Decode(r.body, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Authority != authID || cfg.TrustMode != pass.TrustEnterprise || cfg.Version != "0.1" {
		t.Errorf("configuration: %+v", cfg)
	}
	if !strings.Contains(cfg.Endpoints.IssuanceStatus, "{id}") || cfg.Endpoints.AuthorizationClose != authID+"/authorization-close" {
		t.Errorf("endpoints: %+v", cfg.Endpoints)
	}
	if cfg.AllowsServiceAuthorities() {
		t.Errorf("policy.allow_service_authorities not published as false")
	}
	if cfg.Approval == nil || cfg.Approval.DefaultTTLSeconds != 600 || len(cfg.Approval.Modes) != 1 {
		t.Errorf("approval hints: %+v", cfg.Approval)
	}
	// Discovery (what Services and Harnesses use) accepts it.
	disc, err := discovery.New(e.net.DiscoveryConfig())
	if err != nil {
		t.Fatal(err)
	}
	info, err := disc.DiscoverEnterprise(ctx, corpDomain)
	if err != nil || info.Configuration.Authority != authID {
		t.Fatalf("DiscoverEnterprise: %v", err)
	}
	// A-CFG-5: JWKS holds the public signing key only.
	j := e.do(http.MethodGet, cfg.JWKSURI, nil, nil)
	if j.status != http.StatusOK || !strings.Contains(j.header.Get("Cache-Control"), "max-age") {
		t.Fatalf("JWKS: %d %v", j.status, j.header)
	}
	if strings.Contains(string(j.body), `"d"`) {
		t.Fatalf("JWKS leaks a private key: %s", j.body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(j.body, &set); err != nil || len(set.Keys) != 1 || !set.Keys[0].IsPublic() {
		t.Fatalf("JWKS %s: %v", j.body, err)
	}
}

// TestConfigurationUnderPrefix: BaseURL's path prefixes every route.
func TestConfigurationUnderPrefix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authority.Config) { c.BaseURL = authID + "/agentpass/" })
	if got := e.auth.ConfigurationURL(); got != authID+"/agentpass/configuration" {
		t.Fatalf("ConfigurationURL %q", got)
	}
	if r := e.do(http.MethodGet, e.auth.ConfigurationURL(), nil, nil); r.status != http.StatusOK {
		t.Fatalf("GET configuration under prefix: %d", r.status)
	}
	if r := e.do(http.MethodGet, authID+"/configuration", nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("GET configuration outside the prefix: %d", r.status)
	}
	// A full flow works under the prefix.
	h := e.plainHarness()
	_, st := e.issue(h.req)
	if st == nil || st.Status != pass.StatusPending || !strings.HasPrefix(st.Links.Self, authID+"/agentpass/requests/") {
		t.Fatalf("issuance under prefix: %+v", st)
	}
}

// TestNewValidatesConfig: every invalid configuration is refused by New.
func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	ks, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.New(discovery.Config{Nameservers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	valid := func() authority.Config {
		return authority.Config{Identifier: authID, TrustMode: pass.TrustFederated, Keys: ks, Discovery: disc}
	}
	for _, tc := range []struct {
		name string
		mod  func(*authority.Config)
	}{
		{"no identifier", func(c *authority.Config) { c.Identifier = "" }},
		{"http identifier", func(c *authority.Config) { c.Identifier = "http://idp.test" }},
		{"identifier with query", func(c *authority.Config) { c.Identifier = authID + "?x=1" }},
		{"identifier with fragment", func(c *authority.Config) { c.Identifier = authID + "#x" }},
		{"bad base", func(c *authority.Config) { c.BaseURL = "ftp://x" }},
		{"base path with braces", func(c *authority.Config) { c.BaseURL = authID + "/{x}" }},
		{"no trust mode", func(c *authority.Config) { c.TrustMode = "" }},
		{"unknown trust mode", func(c *authority.Config) { c.TrustMode = "open" }},
		{"no keys", func(c *authority.Config) { c.Keys = nil }},
		{"pass ttl too long", func(c *authority.Config) { c.PassTTL = 6 * time.Minute }},
		{"negative request ttl", func(c *authority.Config) { c.RequestTTL = -1 }},
		{"authorization ttl too long", func(c *authority.Config) { c.AuthorizationTTL = 100 * 24 * time.Hour }},
		{"unknown tier", func(c *authority.Config) { c.AcceptedTiers = []dpop.Tier{"gold"} }},
		{"policy on federated", func(c *authority.Config) { c.AllowServiceAuthorities = &yes }},
		{"domain gate on federated", func(c *authority.Config) { c.RequireEnterpriseDomain = &yes }},
		{"empty registered name", func(c *authority.Config) { c.RegisteredHarnessKeys = map[string]string{"abc": ""} }},
		{"attester without keys", func(c *authority.Config) { c.Attesters = []dpop.Attester{{Issuer: vendorIss}} }},
		{"duplicate attester", func(c *authority.Config) {
			k := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{ks.Current().Public()}}
			c.Attesters = []dpop.Attester{{Issuer: vendorIss, Keys: k}, {Issuer: vendorIss, Keys: k}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mod(&c)
			if _, err := authority.New(c); !errors.Is(err, authority.ErrInvalidConfig) {
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := authority.New(valid()); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
}
