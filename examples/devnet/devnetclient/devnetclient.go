// Package devnetclient builds, from the devnet's manifest.json, everything
// a program needs to reach the devnet from outside its process: an HTTP
// client that trusts the devnet's CA and resolves its host names through
// its DNS server, a discovery client, and the configuration of a Harness.
//
// # Overview
//
// [Load] reads the manifest and returns a [Client]; [New] does the same
// from a CA file and a nameserver alone (the CLI's -ca and -dns flags). A
// Config with neither uses the system's roots and resolver, so the same
// program runs against the Internet.
//
// # Usage
//
//	dev, err := devnetclient.Load("/tmp/devnet/manifest.json")
//	h, err := harness.New(dev.HarnessConfig("my-agent"))
//	// or, in a Service or an Authority of your own:
//	cfg := service.Config{..., HTTPClient: dev.HTTPClient, Discovery: dev.Discovery,
//		InsecureAllowPrivateNetworks: dev.InsecureAllowPrivateNetworks}
package devnetclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/harness"
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

// Client is everything a program needs to reach the network.
type Client struct {
	// Manifest is the devnet's manifest; nil from New.
	Manifest *Manifest
	// HTTPClient verifies certificates against the system roots plus the
	// CA file, and resolves names through the nameserver.
	HTTPClient *http.Client
	// Discovery sends its TXT lookups to the nameserver.
	Discovery *discovery.Client
	// Roots are the system roots plus the CA file's certificates.
	Roots *x509.CertPool
	// Resolver asks only the nameserver; nil without one.
	Resolver *net.Resolver
	// InsecureAllowPrivateNetworks is what to set in a role's Config of
	// the same name: true with a nameserver, since the devnet lives on
	// loopback. Never set it against the Internet.
	InsecureAllowPrivateNetworks bool
}

// maxManifest bounds manifest.json.
const maxManifest = 1 << 20

// Load reads the devnet's manifest.json at path and builds a Client for
// the devnet it describes.
func Load(path string) (*Client, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("devnetclient: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("devnetclient: %w", err)
	}
	if len(raw) > maxManifest {
		return nil, fmt.Errorf("devnetclient: %s is larger than %d bytes", path, maxManifest)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("devnetclient: %s: %w", path, err)
	}
	if m.CAFile == "" || m.DNS == "" {
		return nil, fmt.Errorf("devnetclient: %s names no ca_file or dns: not a devnet manifest", path)
	}
	c, err := New(Config{CAFile: m.CAFile, DNS: m.DNS})
	if err != nil {
		return nil, err
	}
	c.Manifest = &m
	return c, nil
}

// New builds a Client from a CA file and a nameserver.
func New(cfg Config) (*Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("devnetclient: reading the CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, errors.New("devnetclient: no PEM certificate in " + cfg.CAFile)
		}
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
	c := &Client{Roots: roots, HTTPClient: &http.Client{Timeout: timeout, Transport: tr}}
	dc := discovery.Config{HTTPClient: c.HTTPClient}
	if cfg.DNS != "" {
		addr := cfg.DNS
		c.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		// Only with a development nameserver, where the roles are told to
		// allow private networks: a transport with its own dialer is
		// otherwise refused, and the roles dial through their guard.
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Resolver: c.Resolver}
		tr.DialContext = d.DialContext
		dc.Nameservers = []string{addr}
		dc.InsecureAllowPrivateNetworks = true
		c.InsecureAllowPrivateNetworks = true
	}
	if c.Discovery, err = discovery.New(dc); err != nil {
		return nil, fmt.Errorf("devnetclient: %w", err)
	}
	return c, nil
}

// HarnessConfig returns a Harness configuration for the network, with
// harnessID; add the agent's own fields before harness.New.
func (c *Client) HarnessConfig(harnessID string) harness.Config {
	return harness.Config{
		HarnessID:                    harnessID,
		HTTPClient:                   c.HTTPClient,
		Discovery:                    c.Discovery,
		InsecureAllowPrivateNetworks: c.InsecureAllowPrivateNetworks,
	}
}
