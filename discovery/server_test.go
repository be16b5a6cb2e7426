package discovery

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

// route is what the document server answers at one path.
type route struct {
	status       int
	contentType  string
	cacheControl string
	age          string
	location     string
	body         string
	// gate, when set, holds the answer until it is closed or the client
	// gives up, so a test can keep a fetch in flight without a delay.
	gate chan struct{}
}

// docServer is an HTTPS server (httptest's certificate, valid for
// example.com, *.example.com and 127.0.0.1) with settable routes and hit
// counters.
type docServer struct {
	*httptest.Server
	mu     sync.Mutex
	routes map[string]route
	hits   map[string]int
}

func newDocServer(t testing.TB) *docServer {
	ds := &docServer{routes: map[string]route{}, hits: map[string]int{}}
	ds.Server = httptest.NewTLSServer(http.HandlerFunc(ds.serve))
	t.Cleanup(ds.Close)
	return ds
}

func (ds *docServer) serve(w http.ResponseWriter, r *http.Request) {
	ds.mu.Lock()
	rt, ok := ds.routes[r.URL.Path]
	ds.hits[r.URL.Path]++
	ds.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if rt.gate != nil {
		select {
		case <-rt.gate:
		case <-r.Context().Done():
			return
		}
	}
	if rt.contentType != "-" {
		ct := rt.contentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
	}
	if rt.cacheControl != "" {
		w.Header().Set("Cache-Control", rt.cacheControl)
	}
	if rt.age != "" {
		w.Header().Set("Age", rt.age)
	}
	if rt.location != "" {
		w.Header().Set("Location", rt.location)
	}
	status := rt.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(rt.body))
}

func (ds *docServer) set(path string, rt route) {
	ds.mu.Lock()
	ds.routes[path] = rt
	ds.mu.Unlock()
}

func (ds *docServer) hitCount(path string) int {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.hits[path]
}

// mappedClient trusts ds's certificate and connects every host to ds, as if
// DNS pointed there.
func (ds *docServer) mappedClient() *http.Client {
	tr := ds.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		addr := ds.Listener.Addr().String()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr}
}

// env is a DNS server, a document server and a client using both, with a
// fake clock.
type env struct {
	dns *dnstest.Server
	web *docServer
	c   *Client
	clk *fakeClock
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{dns: dnstest.NewServer(t), web: newDocServer(t)}
	e.c, e.clk = newTestClient(t, e.dns, func(cfg *Config) {
		cfg.HTTPClient = e.web.mappedClient()
		cfg.InsecureAllowPrivateNetworks = true // the servers are on loopback
		if mod != nil {
			mod(cfg)
		}
	})
	return e
}

const serviceConfigJSON = `{
  "version": "0.1",
  "kind": "service",
  "service": {"origin": "https://api.example.com", "name": "Example Service"},
  "jwks_uri": "https://api.example.com/agentpass-service/jwks.json",
  "trust": {
    "trusted_federated_authorities": [
      {"authority": "https://codex.example.com", "authority_configuration_url": "https://codex.example.com/ap"}
    ],
    "service_authority": {
      "authority": "https://api.example.com/agentpass",
      "authority_configuration_url": "https://api.example.com/agentpass/ap"
    }
  },
  "endpoints": {
    "resolve_authorities": "https://api.example.com/resolve-authorities",
    "redeem_browser_session": "https://api.example.com/redeem-browser-session",
    "redeem_bearer_token": "https://api.example.com/redeem-bearer-token",
    "available_scopes": "https://api.example.com/agentpass/scopes"
  }
}`

const authorityConfigJSON = `{
  "version": "0.1",
  "authority": "https://agentpass.example.com",
  "trust_mode": "enterprise",
  "jwks_uri": "https://agentpass.example.com/agentpass-authority/jwks.json",
  "endpoints": {
    "issuance": "https://agentpass.example.com/requests",
    "issuance_status": "https://agentpass.example.com/requests/{id}",
    "validate": "https://agentpass.example.com/validate",
    "authorization_check": "https://agentpass.example.com/authorization-check"
  },
  "policy": {"allow_service_authorities": true},
  "approval": {"modes": ["poll"], "default_ttl_seconds": 300}
}`
