package testnet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// TestDiscoverServiceOverNetwork: a Service published in the network's DNS
// is discovered over verified TLS by host name (H-DISC-1, X-DNS-1, X-DNS-14).
func TestDiscoverServiceOverNetwork(t *testing.T) {
	n := New(t)
	cfg := pass.ServiceConfiguration{
		Version: pass.Version, Kind: pass.KindService, Service: pass.ServiceInfo{Origin: "https://todo.test"},
		JWKSURI: "https://todo.test/jwks.json",
		Endpoints: pass.ServiceEndpoints{
			ResolveAuthorities: "https://todo.test/r", RedeemBrowserSession: "https://todo.test/b",
			RedeemBearerToken: "https://todo.test/t", AvailableScopes: "https://todo.test/s",
		},
	}
	origin := n.Serve("todo.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, 200, cfg)
	}))
	if origin != "https://todo.test" {
		t.Fatalf("origin %q", origin)
	}
	n.PublishService("todo.test", "https://todo.test/config")
	d := n.Discovery()
	info, err := d.DiscoverService(context.Background(), origin)
	if err != nil {
		t.Fatalf("DiscoverService: %v", err)
	}
	if info.ConfigurationURL != "https://todo.test/config" || info.Configuration.Service.Origin != origin {
		t.Errorf("info %+v", info)
	}

	// A client that does not trust the network's CA fails the handshake.
	plain := &http.Client{Transport: &http.Transport{DialContext: n.dial, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}}
	if _, err := plain.Get(origin); err == nil {
		t.Error("untrusted CA accepted")
	}
	// Hosts outside the network are unreachable.
	if _, err := n.Client().Get("https://example.com"); err == nil {
		t.Error("foreign host reached")
	}
	// A stopped host is unreachable and discovery says so (not "no record").
	n.Stop("todo.test")
	d2 := n.Discovery()
	if _, err := d2.DiscoverService(context.Background(), origin); !errors.Is(err, discovery.ErrFetchFailed) {
		t.Errorf("stopped host: %v", err)
	}
}

func TestStartOutsideTests(t *testing.T) {
	n, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	origin := n.Serve("a.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	resp, err := n.Client().Get(origin)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("GET %s: %v", origin, err)
	}
	resp.Body.Close()
	n.Close()
	if _, err := n.Client().Get(origin); err == nil {
		t.Error("host still served after Close")
	}
}

// A network on a CA of NewCA serves its hosts with certificates that
// verify, and the CA's name constraints make any other name fail even
// when the CA is trusted.
func TestStartWithCA(t *testing.T) {
	certPEM, keyPEM, err := NewCA("devnet test CA", []string{"test"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n, err := StartWithCA("127.0.0.1:0", certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if string(n.CAPEM()) != string(certPEM) {
		t.Error("the network does not present the given CA")
	}
	n.Serve("app.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	resp, err := n.Client().Get("https://app.test/")
	if err != nil {
		t.Fatalf("a host under the permitted domain: %v", err)
	}
	resp.Body.Close()
	n.Serve("app.example.com", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	var cie x509.CertificateInvalidError
	if _, err := n.Client().Get("https://app.example.com/"); !errors.As(err, &cie) || cie.Reason != x509.CANotAuthorizedForThisName {
		t.Errorf("a host outside the permitted domain: %v, want CANotAuthorizedForThisName", err)
	}
	if _, err := StartWithCA("127.0.0.1:0", certPEM, certPEM); err == nil {
		t.Error("a CA without its key was accepted")
	}
}
