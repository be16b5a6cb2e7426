package discovery_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

// Telling the four outcomes of enterprise discovery apart. Only "no record"
// lets a Service fall back to other Authorities.
func Example_outcomes() {
	dnsSrv, err := dnstest.Start()
	if err != nil {
		panic(err)
	}
	defer dnsSrv.Close()
	dnsSrv.SetTXT("_agentpass.corp.example", 300, "https://agentpass.corp.example/config")
	dnsSrv.SetTXT("_agentpass.locked.example", 300, "none")
	dnsSrv.SetTXT("_agentpass.typo.example", 300, "http://agentpass.typo.example/config")
	dnsSrv.SetFault("_agentpass.down.example", dnstest.FaultServFail)

	c, err := discovery.New(discovery.Config{Nameservers: []string{dnsSrv.Nameserver()}})
	if err != nil {
		panic(err)
	}
	for _, domain := range []string{"corp.example", "locked.example", "nothing.example", "typo.example", "down.example"} {
		u, err := c.LookupEnterpriseTXT(context.Background(), domain)
		switch {
		case err == nil:
			fmt.Println(domain, "-> Enterprise Authority at", u)
		case errors.Is(err, discovery.ErrDelegationDisabled):
			fmt.Println(domain, "-> delegation disabled: reject")
		case errors.Is(err, discovery.ErrNoRecord):
			fmt.Println(domain, "-> no record: other Authorities may be used")
		default:
			fmt.Println(domain, "-> discovery failed: reject, never fall back")
		}
	}
	// Output:
	// corp.example -> Enterprise Authority at https://agentpass.corp.example/config
	// locked.example -> delegation disabled: reject
	// nothing.example -> no record: other Authorities may be used
	// typo.example -> discovery failed: reject, never fall back
	// down.example -> discovery failed: reject, never fall back
}

// An Authority verifying a Service's assertion finds the Service, checks
// that its configuration describes the origin it claims, and fetches the
// verification key.
func ExampleClient_DiscoverService() {
	// The Service's web server: its configuration and its JWKS.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "svc-1", Algorithm: "ES256", Use: "sig"}}})
	web := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		if r.URL.Path == "/jwks.json" {
			_, _ = w.Write(jwks)
			return
		}
		_, _ = fmt.Fprintf(w, `{
		  "version": "0.1", "kind": "service",
		  "service": {"origin": "https://api.example.com"},
		  "jwks_uri": "https://%s/jwks.json",
		  "trust": {},
		  "endpoints": {
		    "resolve_authorities": "https://api.example.com/resolve-authorities",
		    "redeem_browser_session": "https://api.example.com/redeem-browser-session",
		    "redeem_bearer_token": "https://api.example.com/redeem-bearer-token",
		    "available_scopes": "https://api.example.com/scopes"
		  }
		}`, r.Host)
	}))
	defer web.Close()

	dnsSrv, err := dnstest.Start()
	if err != nil {
		panic(err)
	}
	defer dnsSrv.Close()
	dnsSrv.SetTXT("_agentpass-service.api.example.com", 300, web.URL+"/.well-known/agentpass-service")

	c, err := discovery.New(discovery.Config{
		Nameservers:                  []string{dnsSrv.Nameserver()},
		HTTPClient:                   web.Client(), // trusts the test server's certificate
		InsecureAllowPrivateNetworks: true,         // the test server is on loopback
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	svc, err := c.DiscoverService(ctx, "https://API.example.com")
	if err != nil {
		panic(err)
	}
	fmt.Println("origin:", svc.Configuration.Service.Origin)
	k, err := c.LookupKey(ctx, svc.Configuration.JWKSURI, "svc-1")
	if err != nil {
		panic(err)
	}
	fmt.Println("key:", k.KeyID, k.Algorithm)
	_, err = c.LookupKey(ctx, svc.Configuration.JWKSURI, "unknown")
	fmt.Println("unknown kid:", errors.Is(err, discovery.ErrKeyNotFound))
	// Output:
	// origin: https://api.example.com
	// key: svc-1 ES256
	// unknown kid: true
}
