// Package testnet runs a whole AgentPass network on loopback: a real DNS
// server, a throwaway certificate authority, and TLS servers reachable under
// real host names ("https://todo.test") with full certificate verification.
//
// # Overview
//
// [New] (in tests) or [Start] (in the demo and the devnet) starts the
// network; [Network.Serve] puts a handler behind a host name,
// [Network.PublishEnterprise] and [Network.PublishService] write the
// discovery records, and [Network.Client] and [Network.Discovery] reach
// the hosts the way production code would. Package deploy builds the
// parties (Authorities, Services, Harnesses, replicas behind a balancer)
// on it.
//
// # Usage
//
//	n := testnet.New(t) // closed when the test ends
//	n.Serve("idp.corp.test", authorityHandler)
//	n.PublishEnterprise("corp.test", "https://idp.corp.test/configuration")
//	svc, err := service.New(service.Config{..., Discovery: n.Discovery(), HTTPClient: n.Client(),
//		InsecureAllowPrivateNetworks: true})
//
// Every party talks to every other exactly as in production: DNS TXT
// discovery, HTTPS with hostname checks, JSON over the wire. Only name
// resolution of the served hosts is local: the network's HTTP client dials
// "host:443" to the loopback port the host's server listens on, and refuses
// every other destination. A [Clock], passed as every party's Config.Now,
// moves time for all of them at once.
package testnet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

// Network is a loopback AgentPass network. It is safe for concurrent use.
type Network struct {
	DNS *dnstest.Server

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	pool   *x509.CertPool

	mu      sync.Mutex
	hosts   map[string]*host // lower-case host name -> server
	client  *http.Client
	closers []func()
}

type host struct {
	addr    string
	origin  string // "https://host" (Serve) or "https://host:port" (ServePort)
	port    string // the port the network's client dials: "443" or the real port
	server  *http.Server
	handler *swapHandler
}

// swapHandler lets a host's handler be replaced while it serves.
type swapHandler struct {
	mu sync.RWMutex
	h  http.Handler
}

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	h := s.h
	s.mu.RUnlock()
	h.ServeHTTP(w, r)
}

// New starts a network for a test; it is closed when the test ends.
func New(t testing.TB) *Network {
	t.Helper()
	n, err := newNetwork(dnstest.NewServer(t))
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

// Start starts a network outside a test (the demo, the devnet). The caller
// must Close it.
func Start() (*Network, error) { return StartAt("127.0.0.1:0") }

// StartAt is Start with the DNS server on a chosen address
// ("127.0.0.1:5353"; port 0 picks a free port), for the devnet's -dns-addr.
func StartAt(dnsAddr string) (*Network, error) {
	dns, err := dnstest.StartAt(dnsAddr)
	if err != nil {
		return nil, err
	}
	n, err := newNetwork(dns)
	if err != nil {
		dns.Close()
		return nil, err
	}
	n.closers = append(n.closers, dns.Close)
	return n, nil
}

// StartWithCA is StartAt with the certificate authority of certPEM and
// keyPEM (see [NewCA]) instead of a throwaway one, so that a development
// network keeps its CA, and whoever trusts it, across restarts.
func StartWithCA(dnsAddr string, certPEM, keyPEM []byte) (*Network, error) {
	cert, key, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	dns, err := dnstest.StartAt(dnsAddr)
	if err != nil {
		return nil, err
	}
	n, err := newNetworkCA(dns, cert, key)
	if err != nil {
		dns.Close()
		return nil, err
	}
	n.closers = append(n.closers, dns.Close)
	return n, nil
}

func newNetwork(dns *dnstest.Server) (*Network, error) { return newNetworkCA(dns, nil, nil) }

func newNetworkCA(dns *dnstest.Server, caCert *x509.Certificate, caKey *ecdsa.PrivateKey) (*Network, error) {
	n := &Network{DNS: dns, hosts: map[string]*host{}}
	if caCert != nil {
		n.useCA(caCert, caKey)
	} else if err := n.makeCA(); err != nil {
		return nil, err
	}
	n.client = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: n.pool, MinVersion: tls.VersionTLS12},
			DialContext:     n.dial,
			// HTTP/1.1, as the roles' own clients speak (internal/outbound),
			// so that benchmarks calling through this client measure the
			// same protocol.
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	return n, nil
}

func (n *Network) makeCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "AgentPass testnet CA (throwaway)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	cert, _ := x509.ParseCertificate(der)
	n.useCA(cert, key)
	return nil
}

func (n *Network) useCA(cert *x509.Certificate, key *ecdsa.PrivateKey) {
	n.caCert, n.caKey = cert, key
	n.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	n.pool = x509.NewCertPool()
	n.pool.AddCert(cert)
}

// NewCA returns a new certificate authority for [StartWithCA], valid for
// validity from now, in PEM form (certificate, PKCS#8 key). X.509 name
// constraints limit it to domains and their subdomains, so that a CA a
// developer trusts on their machine cannot vouch for any other name.
func NewCA(name string, domains []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(domains) == 0 {
		return nil, nil, fmt.Errorf("testnet: a CA needs the domains it is limited to")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:                serial(),
		Subject:                     pkix.Name{CommonName: name},
		NotBefore:                   time.Now().Add(-time.Hour),
		NotAfter:                    time.Now().Add(validity),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         domains,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// parseCA reads a CA of NewCA.
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("testnet: the CA is not a PEM certificate and a PEM PKCS#8 key")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("testnet: CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("testnet: CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("testnet: the CA key does not belong to a CA certificate")
	}
	return cert, key, nil
}

func serial() *big.Int {
	s, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return s
}

func (n *Network) leaf(hostname string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hostname},
		DNSNames:     []string{hostname},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, n.caCert, &key.PublicKey, n.caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Serve starts an HTTPS server for hostname with a certificate from the
// network's CA and returns its origin, "https://hostname". Serving a host
// again replaces its handler.
func (n *Network) Serve(hostname string, h http.Handler) string {
	origin, err := n.serve(hostname, h, "127.0.0.1:0", false)
	if err != nil {
		panic("testnet: " + err.Error())
	}
	return origin
}

// ServeAt is Serve on a chosen loopback address ("127.0.0.1:8443"), for the
// devnet's fixed ports.
func (n *Network) ServeAt(hostname, addr string, h http.Handler) (string, error) {
	return n.serve(hostname, h, addr, false)
}

// ServePort starts an HTTPS server for hostname on a loopback address
// ("127.0.0.1:8443", or "127.0.0.1:0" for a free port) and returns an
// origin with that explicit port, "https://hostname:8443", which tools
// outside the process can reach once hostname resolves to 127.0.0.1. The
// network's client dials "hostname:port", and the network's DNS server
// answers A queries for hostname with 127.0.0.1. Serving a host again
// replaces its handler and returns its origin.
func (n *Network) ServePort(hostname, addr string, h http.Handler) (string, error) {
	return n.serve(hostname, h, addr, true)
}

func (n *Network) serve(hostname string, h http.Handler, addr string, explicitPort bool) (string, error) {
	hostname = strings.ToLower(hostname)
	n.mu.Lock()
	if existing, ok := n.hosts[hostname]; ok {
		n.mu.Unlock()
		existing.handler.mu.Lock()
		existing.handler.h = h
		existing.handler.mu.Unlock()
		return existing.origin, nil
	}
	n.mu.Unlock()
	cert, err := n.leaf(hostname)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	sh := &swapHandler{h: h}
	srv := &http.Server{
		Handler:           sh,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(discard{}, "", 0),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	hs := &host{addr: ln.Addr().String(), origin: "https://" + hostname, port: "443", server: srv, handler: sh}
	if explicitPort {
		_, hs.port, _ = net.SplitHostPort(hs.addr)
		hs.origin = "https://" + net.JoinHostPort(hostname, hs.port)
		n.DNS.SetA(hostname, 60, net.IPv4(127, 0, 0, 1))
	}
	n.mu.Lock()
	n.hosts[hostname] = hs
	n.mu.Unlock()
	return hs.origin, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Stop shuts a host's server down, so the host becomes unreachable (for
// "Authority down" tests). Its name stays mapped: connections are refused.
func (n *Network) Stop(hostname string) {
	n.mu.Lock()
	h := n.hosts[strings.ToLower(hostname)]
	n.mu.Unlock()
	if h != nil {
		_ = h.server.Close()
	}
}

// Addr returns the loopback address hostname is served on.
func (n *Network) Addr(hostname string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h := n.hosts[strings.ToLower(hostname)]; h != nil {
		return h.addr
	}
	return ""
}

// Hosts returns every served host name with the loopback address its
// server listens on.
func (n *Network) Hosts() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]string, len(n.hosts))
	for name, h := range n.hosts {
		out[name] = h.addr
	}
	return out
}

// Origin returns the origin a served host was given ("https://host" or
// "https://host:port"), or "".
func (n *Network) Origin(hostname string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h := n.hosts[strings.ToLower(hostname)]; h != nil {
		return h.origin
	}
	return ""
}

func (n *Network) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	hostname, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	h := n.hosts[strings.ToLower(hostname)]
	n.mu.Unlock()
	if h == nil || port != h.port {
		return nil, fmt.Errorf("testnet: %s is not a host of this network", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, h.addr)
}

// Client returns an HTTP client that trusts only the network's CA and
// reaches only the network's hosts. Its dialer maps the hosts' names, so a
// role accepts it only with InsecureAllowPrivateNetworks set.
func (n *Network) Client() *http.Client { return n.client }

// GuardedClient returns a client for tests of the address check, which
// the roles refuse to skip: it trusts the network's CA and has no dialer
// of its own, so the role installs its guarded one. Pair it with
// [Network.RouteToLoopback] as the role's WrapTransport.
func (n *Network) GuardedClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: n.pool, MinVersion: tls.VersionTLS12},
	}}
}

// RouteToLoopback is a WrapTransport for tests of the address check: it
// sends each request for a host of the network to that host's loopback
// address, as a DNS answer pointing there would, so that a guarded
// transport must refuse it before connecting.
func (n *Network) RouteToLoopback(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		port := req.URL.Port()
		if port == "" {
			port = "443"
		}
		n.mu.Lock()
		h := n.hosts[strings.ToLower(req.URL.Hostname())]
		n.mu.Unlock()
		if h != nil && port == h.port {
			req = req.Clone(req.Context())
			req.URL.Host = h.addr
		}
		return next.RoundTrip(req)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// CAPEM returns the CA certificate in PEM form (the devnet writes it to a
// file for users' own tools).
func (n *Network) CAPEM() []byte { return n.caPEM }

// CertPool returns a pool holding the network's CA.
func (n *Network) CertPool() *x509.CertPool { return n.pool }

// DiscoveryConfig returns a discovery configuration for this network: its DNS
// server, its HTTP client, and private addresses allowed (the servers are on
// loopback). Callers may set more fields (Now, Logger) before discovery.New.
func (n *Network) DiscoveryConfig() discovery.Config {
	return discovery.Config{
		Nameservers:                  []string{n.DNS.Addr()},
		HTTPClient:                   n.client,
		InsecureAllowPrivateNetworks: true,
	}
}

// Discovery returns a new discovery client for this network.
func (n *Network) Discovery() *discovery.Client { return n.DiscoveryAt(nil) }

// DiscoveryAt returns a new discovery client for this network on the clock
// now (nil: time.Now). Each party gets its own, with caches of its own, as
// separate processes would.
func (n *Network) DiscoveryAt(now func() time.Time) *discovery.Client {
	cfg := n.DiscoveryConfig()
	cfg.Now = now
	c, err := discovery.New(cfg)
	if err != nil {
		panic("testnet: " + err.Error()) // the configuration is fixed: a bug
	}
	return c
}

// SetTXT sets the TXT record of name (TTL 60 s).
func (n *Network) SetTXT(name string, values ...string) { n.DNS.SetTXT(name, 60, values...) }

// PublishService points _agentpass-service.{host} at a Service's
// configuration URL.
func (n *Network) PublishService(hostname, configURL string) {
	n.SetTXT("_agentpass-service."+hostname, configURL)
}

// PublishEnterprise points _agentpass.{domain} at an Enterprise Authority's
// configuration URL, or at "none".
func (n *Network) PublishEnterprise(domain, configURLOrNone string) {
	n.SetTXT("_agentpass."+domain, configURLOrNone)
}

// Close stops every server of the network.
func (n *Network) Close() {
	n.mu.Lock()
	hosts := n.hosts
	n.hosts = map[string]*host{}
	closers := n.closers
	n.mu.Unlock()
	if t, ok := n.client.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	// Close, not Shutdown: a graceful HTTP/2 shutdown waits for clients
	// that keep connections open, which made every test network cost a
	// second or more per host. Nothing of value is in flight at Close.
	for _, h := range hosts {
		_ = h.server.Close()
	}
	for _, c := range closers {
		c()
	}
	if t, ok := n.client.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

// AddExternal makes a server outside the network a host of it, for the
// devnet's users who run their own Service or Harness-side server: the
// network's client dials "hostname:port" (port of addr) to addr, the DNS
// server answers A queries for hostname with addr's IP, and a certificate
// for hostname from the network's CA is returned in PEM form (certificate,
// then PKCS#8 private key) for that server to present. It returns the
// host's origin, "https://hostname:port".
func (n *Network) AddExternal(hostname, addr string) (origin string, certPEM, keyPEM []byte, err error) {
	hostname = strings.ToLower(hostname)
	ip, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, nil, fmt.Errorf("testnet: %w", err)
	}
	parsed := net.ParseIP(ip)
	if parsed == nil || parsed.To4() == nil {
		return "", nil, nil, fmt.Errorf("testnet: %q is not an IPv4 address and port", addr)
	}
	cert, err := n.leaf(hostname)
	if err != nil {
		return "", nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	origin = "https://" + net.JoinHostPort(hostname, port)
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.hosts[hostname]; ok {
		return "", nil, nil, fmt.Errorf("testnet: %s is already a host of this network", hostname)
	}
	// A stopped server: Close and Stop leave it alone; the dialer only
	// needs addr and port.
	n.hosts[hostname] = &host{addr: addr, origin: origin, port: port, server: &http.Server{}, handler: &swapHandler{h: http.NotFoundHandler()}}
	n.DNS.SetA(hostname, 60, parsed)
	return origin, certPEM, keyPEM, nil
}
