// Command devnet runs a local AgentPass network that stays up until Ctrl-C,
// for trying your own harness, service or tools against every party.
//
// # Overview
//
// It serves a DNS server, an Enterprise Authority for two domains
// (corp.test allows Service Authorities, strict.test forbids them), a
// Federated Authority, a Service Authority, the to-do Service, a domain
// whose record is "none" and one whose enterprise configuration is broken.
// Every Authority serves an approval page. It writes manifest.json and
// ca.pem, which tell your programs where everything is and which CA to
// trust; see README.md.
//
// # Usage
//
//	go run ./examples/devnet [-dir DIR] [-dns-addr 127.0.0.1:5353] [-port 8443] [-admin-token T] [-postgres DSN] [-v]
//
// -help lists every flag, including -external (serve your own host in the
// network), -txt (publish a record) and -require-hardened-proofs.
package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is the command line.
type config struct {
	dir        string
	dnsAddr    string
	ports      string
	adminToken string
	postgres   string
	verbose    bool
	preferSA   bool
	hardened   bool
	// pgSchemaPrefix names the PostgreSQL schemas; default agentpass_devnet.
	pgSchemaPrefix string
	externals      listFlag // host=127.0.0.1:port
	txts           listFlag // name=value

	// now is every party's clock (tests); nil means time.Now.
	now func() time.Time
	// wrapServiceStore, when set, wraps the to-do Service's store (tests
	// observe the events it applies); it is not applied with -postgres.
	wrapServiceStore func(service.Store) service.Store
}

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("devnet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.dir, "dir", "", "directory for manifest.json and ca.pem (default: a new temporary directory)")
	fs.StringVar(&c.dnsAddr, "dns-addr", "127.0.0.1:0", "address of the DNS server (UDP and TCP)")
	fs.StringVar(&c.ports, "port", "", "base port (hosts get base, base+1, ... in the order todo.test, idp.corp.test, approvals.test, broken.test),\nor per-host ports: todo.test=8443,idp.corp.test=8444 (default: ports chosen by the OS)")
	fs.StringVar(&c.adminToken, "admin-token", "", "bearer token of the approval pages' admin API (default: random, printed)")
	fs.StringVar(&c.postgres, "postgres", "", "PostgreSQL connection string: keep the Authorities' and the Service's state there\n(one schema per party, agentpass_devnet_*; migrated at start)")
	fs.BoolVar(&c.preferSA, "prefer-service-authority", false, "make the Service name its own Authority wherever policy allows it\n(alex@corp.test and kim@gmail.test then resolve to the Service Authority)")
	fs.Var(&c.externals, "external", "host=127.0.0.1:PORT: make your own server a host of the devnet (repeatable): the devnet's parties\nreach it, its DNS answers A queries for it, and DIR/HOST.pem and DIR/HOST-key.pem hold its certificate from the devnet's CA")
	fs.Var(&c.txts, "txt", "name=value: publish a TXT record (repeatable), e.g. _agentpass-service.mine.test=https://mine.test:9443/agentpass/configuration")
	fs.BoolVar(&c.hardened, "require-hardened-proofs", false, "make every Authority and the Service refuse Harnesses that do not list the holder-binding\nextension (plain v0.1 Harnesses); off by default so other implementations can test here")
	fs.BoolVar(&c.verbose, "v", false, "print every party's structured audit log to stderr")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./examples/devnet [flags]\n\nA local AgentPass network that stays up until Ctrl-C. Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "devnet:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := start(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "devnet:", err)
		return 1
	}
	d.printSummary(stdout)
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nShutting down…")
	d.Close()
	return 0
}

// devnet is the running network.
type devnet struct {
	net      *testnet.Network
	sb       *sandbox.Sandbox
	manifest Manifest
	closers  []func()
}

// Close stops every server and closes the database pools.
func (d *devnet) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// hostAddrs turns the -port flag into listen addresses.
func hostAddrs(spec string) (map[string]string, error) {
	addrs := map[string]string{}
	if spec == "" {
		return addrs, nil
	}
	if !strings.Contains(spec, "=") {
		base, err := strconv.Atoi(spec)
		if err != nil || base <= 0 || base+len(sandbox.Hosts) > 65536 {
			return nil, fmt.Errorf("-port %q: want a base port or host=port pairs", spec)
		}
		for i, h := range sandbox.Hosts {
			addrs[h] = net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i))
		}
		return addrs, nil
	}
	for part := range strings.SplitSeq(spec, ",") {
		host, port, ok := strings.Cut(strings.TrimSpace(part), "=")
		p, err := strconv.Atoi(port)
		if !ok || err != nil || p < 0 || p > 65535 || !slices.Contains(sandbox.Hosts, host) {
			return nil, fmt.Errorf("-port: %q is not host=port with a host among %s", part, strings.Join(sandbox.Hosts, ", "))
		}
		addrs[host] = net.JoinHostPort("127.0.0.1", port)
	}
	return addrs, nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// start builds the network and writes the manifest and the CA file. ctx
// bounds the database janitors; Close stops everything.
func start(ctx context.Context, cfg config, logw io.Writer) (_ *devnet, err error) {
	addrs, err := hostAddrs(cfg.ports)
	if err != nil {
		return nil, err
	}
	if cfg.adminToken == "" {
		cfg.adminToken = randomToken()
	}
	if cfg.dir == "" {
		if cfg.dir, err = os.MkdirTemp("", "agentpass-devnet-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return nil, err
	}
	logger := slog.New(slog.DiscardHandler)
	if cfg.verbose {
		logger = slog.New(slog.NewTextHandler(logw, nil))
	}

	caCert, caKey, err := loadCA(cfg.dir, logw)
	if err != nil {
		return nil, err
	}
	n, err := testnet.StartWithCA(cfg.dnsAddr, caCert, caKey)
	if err != nil {
		return nil, fmt.Errorf("DNS server on %s: %w", cfg.dnsAddr, err)
	}
	d := &devnet{net: n, closers: []func(){n.Close}}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	opts := sandbox.Options{
		ExplicitPorts: true, Addrs: addrs, ApprovalPages: true, AdminToken: cfg.adminToken,
		Logger: logger, PollAfter: time.Second, CheckInterval: 5 * time.Second,
		AuthorityChoice:       service.OfferServiceAndFederated,
		RequireHardenedProofs: cfg.hardened, Now: cfg.now,
		// Revocations reach the to-do Service at once (RFC 8935 push).
		EventDelivery: pass.DeliveryPush,
	}
	if cfg.preferSA {
		opts.AuthorityChoice = service.PreferServiceAuthority
	}
	if opts.Compiler, err = compiler(); err != nil {
		return nil, err
	}
	store := "memory"
	if cfg.postgres != "" {
		if err := d.usePostgres(ctx, cfg.postgres, cfg.pgSchemaPrefix, logger, &opts); err != nil {
			return nil, err
		}
		store = "postgres"
	} else if cfg.wrapServiceStore != nil {
		opts.ServiceStore = cfg.wrapServiceStore(service.NewMemoryStore())
	}
	d.sb, err = sandbox.Build(n, opts)
	if err != nil {
		return nil, err
	}
	// The Service's background work (revoking refused redemptions whose
	// close failed) runs for as long as the devnet does.
	// So do the Authorities' event transmitters, which push revocations
	// to it.
	runCtx, stop := context.WithCancel(context.Background())
	var ran sync.WaitGroup
	ran.Go(func() { _ = d.sb.Service.Run(runCtx) })
	for _, a := range d.sb.Authorities() {
		ran.Go(func() { _ = a.RunEventTransmitter(runCtx) })
	}
	d.closers = append(d.closers, func() { stop(); ran.Wait() })
	d.manifest, err = d.buildManifest(ctx, cfg, store)
	if err != nil {
		return nil, err
	}
	if err := d.addExternals(cfg); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(d.manifest, "", "  ")
	// The manifest holds the admin token: readable by its owner only.
	if err := os.WriteFile(d.manifest.ManifestFile, append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	return d, nil
}

// caDomain is the one domain the devnet's CA may vouch for: .test is
// reserved (RFC 2606) and never public, so trusting the CA on a
// developer's machine exposes no real name.
const caDomain = "test"

// caValidity is the devnet CA's lifetime; a CA within caRenew of its end
// is replaced at start.
const (
	caValidity = 365 * 24 * time.Hour
	caRenew    = 8 * 24 * time.Hour
)

// loadCA returns the CA kept in dir (ca.pem, ca-key.pem), creating it on
// the first start, so that tools and external servers that trust it keep
// working across restarts.
func loadCA(dir string, logw io.Writer) (certPEM, keyPEM []byte, err error) {
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	certPEM, cerr := os.ReadFile(certFile)
	keyPEM, kerr := os.ReadFile(keyFile)
	if cerr == nil && kerr == nil {
		if fi, err := os.Stat(keyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, nil, fmt.Errorf("%s is readable by others (mode %v): chmod 600 it, or delete both CA files for a new CA", keyFile, fi.Mode().Perm())
		}
		if caUsable(certPEM) {
			return certPEM, keyPEM, nil
		}
		fmt.Fprintf(logw, "devnet: the CA in %s expires soon or is not the devnet's; making a new one (trust the new ca.pem)\n", dir)
	} else if !errors.Is(cerr, os.ErrNotExist) || !errors.Is(kerr, os.ErrNotExist) {
		if cerr == nil || kerr == nil {
			return nil, nil, fmt.Errorf("%s and %s must both exist or both be absent", certFile, keyFile)
		}
		return nil, nil, errors.Join(cerr, kerr)
	}
	certPEM, keyPEM, err = testnet.NewCA("AgentPass devnet CA (.test only)", []string{caDomain}, caValidity)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// caUsable reports whether a kept CA is the devnet's (limited to .test)
// and valid for a while yet.
func caUsable(certPEM []byte) bool {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return false
	}
	c, err := x509.ParseCertificate(b.Bytes)
	return err == nil && c.IsCA && time.Now().Add(caRenew).Before(c.NotAfter) &&
		slices.Equal(c.PermittedDNSDomains, []string{caDomain})
}

// addExternals serves the -external and -txt flags.
func (d *devnet) addExternals(cfg config) error {
	for _, e := range cfg.externals {
		host, addr, ok := strings.Cut(e, "=")
		if !ok || host == "" || strings.ContainsAny(host, "/\\ :") {
			return fmt.Errorf("-external %q: want host=127.0.0.1:PORT", e)
		}
		if !strings.HasSuffix(strings.ToLower(host), "."+caDomain) {
			return fmt.Errorf("-external %q: the host must end in .%s, the only domain the devnet's CA vouches for", e, caDomain)
		}
		origin, certPEM, keyPEM, err := d.net.AddExternal(host, addr)
		if err != nil {
			return fmt.Errorf("-external %q: %w", e, err)
		}
		x := ManifestExternal{Host: host, Addr: addr, Origin: origin,
			CertFile: filepath.Join(cfg.dir, host+".pem"), KeyFile: filepath.Join(cfg.dir, host+"-key.pem")}
		if err := os.WriteFile(x.CertFile, certPEM, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(x.KeyFile, keyPEM, 0o600); err != nil {
			return err
		}
		_, port, _ := net.SplitHostPort(addr)
		d.manifest.External = append(d.manifest.External, x)
		d.manifest.Hosts[host] = addr
		d.manifest.EtcHosts = append(d.manifest.EtcHosts, "127.0.0.1 "+host)
		d.manifest.Curl[host] = host + ":" + port + ":127.0.0.1"
	}
	for _, t := range cfg.txts {
		name, value, ok := strings.Cut(t, "=")
		if !ok || name == "" {
			return fmt.Errorf("-txt %q: want name=value", t)
		}
		d.net.SetTXT(name, value)
		d.manifest.DNSRecords[name] = value
	}
	return nil
}

// resolution asks the Service which Authority governs user, as a Harness
// does (POST resolve_authorities), and names the branch or the refusal.
func resolution(ctx context.Context, d *devnet, user string) (branch string, refs []pass.AuthorityRef, refusal *pass.PeerError) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg := d.sb.Service.Configuration()
	var out pass.ResolutionResponse
	_, err := httpx.Do(ctx, d.net.Client(), httpx.Call{Peer: pass.PeerService, URL: cfg.Endpoints.ResolveAuthorities, Body: pass.ResolutionRequest{User: pass.User{Email: user}}}, &out)
	if err != nil {
		var pe *pass.PeerError
		if errors.As(err, &pe) {
			return "refused", nil, pe
		}
		return "refused", nil, &pass.PeerError{Peer: pass.PeerService, Message: err.Error()}
	}
	switch {
	case out.EnterpriseAuthority != nil:
		return "enterprise", []pass.AuthorityRef{*out.EnterpriseAuthority}, nil
	case out.ServiceAuthority != nil && out.TrustedFederatedAuthorities != nil:
		return "service_or_federated", append([]pass.AuthorityRef{*out.ServiceAuthority}, out.TrustedFederatedAuthorities...), nil
	case out.ServiceAuthority != nil:
		return "service", []pass.AuthorityRef{*out.ServiceAuthority}, nil
	}
	return "federated", out.TrustedFederatedAuthorities, nil
}

func (d *devnet) printSummary(w io.Writer) {
	m := d.manifest
	fmt.Fprintf(w, "AgentPass devnet is up. Ctrl-C stops it.\n\n")
	fmt.Fprintf(w, "  manifest     %s\n  CA file      %s  (kept in this directory across restarts; valid for *.test only)\n  DNS server   %s  (TXT discovery records; A records: every host → 127.0.0.1)\n  admin token  %s\n  store        %s\n\n",
		m.ManifestFile, m.CAFile, m.DNS, m.AdminToken, m.Store)
	fmt.Fprintf(w, "Hosts (for /etc/hosts, curl --resolve, or resolve through the DNS server):\n")
	for _, h := range sandbox.Hosts {
		fmt.Fprintf(w, "  %-16s %s\n", h, m.Hosts[h])
	}
	for _, x := range m.External {
		fmt.Fprintf(w, "  %-16s %s  (yours: serve %s with %s and %s)\n", x.Host, x.Addr, x.Origin, x.CertFile, x.KeyFile)
	}
	fmt.Fprintf(w, "\nDNS TXT records:\n")
	names := slices.Sorted(maps.Keys(m.DNSRecords))
	for _, name := range names {
		fmt.Fprintf(w, "  %-34s %s\n", name, m.DNSRecords[name])
	}
	fmt.Fprintf(w, "\nService  %s\n  app %s   API %s\n  configuration %s\n", m.Service.Origin, m.Service.App, m.Service.API, m.Service.ConfigurationURL)
	fmt.Fprintf(w, "\nAuthorities (identifier, configuration, approval page):\n")
	for _, a := range m.Authorities {
		fmt.Fprintf(w, "  %-28s %s\n  %-28s %s\n  %-28s %s\n", a.Name, a.Identifier, "", a.ConfigurationURL, "", a.ApprovalPage)
	}
	fmt.Fprintf(w, "\nTest users (one per resolution branch):\n")
	for _, u := range m.Users {
		b := u.Branch
		if u.Error != "" {
			b += " (" + u.Error + ")"
		}
		fmt.Fprintf(w, "  %-17s %-30s %s\n", u.Email, b, u.Expect)
	}
	fmt.Fprintf(w, "\nTry:\n  go run ./examples/agentpass -devnet %s token %s %s -task 'Add milk to my list'\n",
		m.ManifestFile, m.Service.Origin, sandbox.UserEnterprise)
	fmt.Fprintf(w, "  (then approve it at %s)\n", m.Authorities[0].ApprovalPage)
	fmt.Fprintf(w, "  curl --cacert %s --resolve %s %s\n", m.CAFile, m.Curl[sandbox.TodoHost], m.Service.ConfigurationURL)
}
