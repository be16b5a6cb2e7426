// Package devclient builds HTTP clients and discovery configurations for
// tools that reach a development network from outside its process.
//
// # Overview
//
// [HTTPClient] trusts the network's CA file and resolves host names through
// its DNS server when dialing; [DiscoveryConfig] sends discovery's TXT
// lookups to the same server. A [Config] with neither set uses the
// system's roots and resolver.
//
// # Usage
//
//	cfg := devclient.Config{CAFile: "devnet/ca.pem", DNS: "127.0.0.1:5353"}
//	client, err := devclient.HTTPClient(cfg)
//	disc, err := discovery.New(devclient.DiscoveryConfig(cfg, client))
package devclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/agentpass-go/agentpass/discovery"
)

// Config says how to reach the network.
type Config struct {
	// CAFile is a PEM file of extra root certificates (the devnet's
	// ca.pem). If empty, the system roots.
	CAFile string
	// DNS is a nameserver ("127.0.0.1:5353") used for discovery's TXT
	// lookups and to resolve host names when dialing. If empty, the
	// system's resolver.
	DNS string
	// Timeout bounds each HTTP request. If zero, 30 s.
	Timeout time.Duration
}

// Resolver returns a resolver that asks only the nameserver addr.
func Resolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// Roots returns the system roots plus the certificates of the PEM file.
func Roots(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading -ca: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("-ca: no PEM certificate in " + caFile)
	}
	return pool, nil
}

// HTTPClient returns a client that verifies certificates against the roots
// of cfg and resolves names through cfg.DNS.
func HTTPClient(cfg Config) (*http.Client, error) {
	roots, err := Roots(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     30 * time.Second,
	}
	if cfg.DNS != "" {
		// Only with a development nameserver, where the roles are told to
		// allow private networks: a transport with its own dialer is
		// otherwise refused, and the roles dial through their guard.
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Resolver: Resolver(cfg.DNS)}
		tr.DialContext = d.DialContext
	}
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}

// DiscoveryConfig returns a discovery configuration using client and the
// nameserver of cfg. Private (loopback) destinations are allowed when a
// nameserver is set, since a development network lives on loopback.
func DiscoveryConfig(cfg Config, client *http.Client) discovery.Config {
	dc := discovery.Config{HTTPClient: client}
	if cfg.DNS != "" {
		dc.Nameservers = []string{cfg.DNS}
		dc.InsecureAllowPrivateNetworks = true
	}
	return dc
}
