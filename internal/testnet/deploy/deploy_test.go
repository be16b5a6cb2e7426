package deploy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// Two replicas behind a balancer serve one configuration with one key set;
// the balancer alternates, honours the pin header and counts by replica.
func TestAuthorityReplicasBehindBalancer(t *testing.T) {
	n := testnet.New(t)
	clock := testnet.NewClock(time.Now())
	as, err := deploy.Authorities(n, authority.Config{
		Identifier: "https://idp.corp.test", TrustMode: pass.TrustEnterprise, Now: clock.Now,
	}, deploy.Stores{Authority: authority.NewMemoryStore()}, deploy.Stores{Authority: authority.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	lb := deploy.NewBalancer(as[0], as[1])
	n.Serve("idp.corp.test", lb)
	get := func(url string, pin bool, v any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if pin {
			req.Header.Set(deploy.PinHeader, "1")
		}
		resp, err := n.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: %s: %v", url, resp.Status, err)
		}
	}
	var kids []string
	for i := range 4 {
		var cfg pass.AuthorityConfiguration
		get(as[0].ConfigurationURL(), i == 3, &cfg)
		var jwks struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		get(cfg.JWKSURI, i == 3, &jwks)
		if len(jwks.Keys) == 0 {
			t.Fatal("no keys")
		}
		kids = append(kids, jwks.Keys[0].Kid)
	}
	for _, k := range kids {
		if k != kids[0] {
			t.Errorf("replicas serve different keys: %v", kids)
		}
	}
	path := strings.TrimPrefix(as[0].ConfigurationURL(), "https://idp.corp.test")
	// Requests alternate across paths: each configuration read went to
	// replica 0 and each JWKS read to replica 1, except the pinned pair.
	if got := lb.Hits(path); got[0] != 3 || got[1] != 1 {
		t.Errorf("configuration hits per replica = %v, want [3 1]", got)
	}
	jwksPath := strings.TrimPrefix(as[0].Configuration().JWKSURI, "https://idp.corp.test")
	if got := lb.Hits(jwksPath); got[0] != 0 || got[1] != 4 {
		t.Errorf("JWKS hits per replica = %v, want [0 4]", got)
	}
}
