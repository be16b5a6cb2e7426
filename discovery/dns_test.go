package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

const cfgURL = "https://ap.example.com/.well-known/agentpass"

// X-DNS-1…8, G-10, G-11: every outcome, for both record kinds.
func TestLookupOutcomes(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, nil)

	type setup func(name string)
	txt := func(vals ...string) setup {
		return func(n string) { srv.SetTXT(n, 300, vals...) }
	}
	fault := func(f dnstest.Fault) setup {
		return func(n string) { srv.SetTXT(n, 300, cfgURL); srv.SetFault(n, f) }
	}
	tests := []struct {
		name       string
		setup      setup
		enterprise string // outcome of the enterprise lookup ("ok" = cfgURL)
		service    string // outcome of the Service lookup
		wantURL    string
	}{
		{"https URL", txt(cfgURL), "ok", "ok", cfgURL},
		{"URL with port, query", txt("https://ap.example.com:8443/c?x=1"), "ok", "ok", "https://ap.example.com:8443/c?x=1"},
		{"none", txt("none"), "none", "invalid-record", ""},
		{"None is not none", txt("None"), "invalid-record", "invalid-record", ""},
		{"none with space", txt("none "), "invalid-record", "invalid-record", ""},
		{"URL with leading space", txt(" " + cfgURL), "invalid-record", "invalid-record", ""},
		{"URL with trailing space", txt(cfgURL + " "), "invalid-record", "invalid-record", ""},
		{"http URL", txt("http://a.example/ap"), "invalid-record", "invalid-record", ""},
		{"yes", txt("yes"), "invalid-record", "invalid-record", ""},
		{"empty string", txt(""), "invalid-record", "invalid-record", ""},
		{"HTTPS upper-case scheme", txt("HTTPS://ap.example.com/"), "invalid-record", "invalid-record", ""},
		{"userinfo", txt("https://u:p@ap.example.com/"), "invalid-record", "invalid-record", ""},
		{"fragment", txt(cfgURL + "#f"), "invalid-record", "invalid-record", ""},
		{"no host", txt("https:///path"), "invalid-record", "invalid-record", ""},
		{"control byte", txt(cfgURL + "\x00"), "invalid-record", "invalid-record", ""},
		{"non-ASCII", txt("https://bücher.example/"), "invalid-record", "invalid-record", ""},
		{"one of two parses", txt("v=spf1 -all", cfgURL), "ok", "ok", cfgURL},
		{"none and junk", txt("none", "junk"), "none", "invalid-record", ""},
		{"two URLs", txt(cfgURL, "https://other.example.com/"), "invalid-record", "invalid-record", ""},
		{"URL and none", txt(cfgURL, "none"), "invalid-record", "ok", cfgURL},
		{"none of two parses", txt("a", "b"), "invalid-record", "invalid-record", ""},
		{"duplicates count once", txt(cfgURL, cfgURL), "ok", "ok", cfgURL},
		{"NODATA", func(n string) { srv.SetNoData(n) }, "no-record", "no-record", ""},
		{"NXDOMAIN", func(string) {}, "no-record", "no-record", ""},
		{"CNAME to nothing", func(n string) { srv.SetCNAME(n, 60, "gone."+n) }, "no-record", "no-record", ""},
		{"CNAME to a record", func(n string) {
			srv.SetCNAME(n, 60, "target."+n)
			srv.SetTXT("target."+n, 60, cfgURL)
		}, "ok", "ok", cfgURL},
		{"SERVFAIL", fault(dnstest.FaultServFail), "lookup-failed", "lookup-failed", ""},
		{"REFUSED", fault(dnstest.FaultRefused), "lookup-failed", "lookup-failed", ""},
		{"timeout", fault(dnstest.FaultTimeout), "lookup-failed", "lookup-failed", ""},
		{"malformed", fault(dnstest.FaultMalformed), "lookup-failed", "lookup-failed", ""},
		{"wrong question", fault(dnstest.FaultWrongName), "lookup-failed", "lookup-failed", ""},
		{"truncated, TCP answers", fault(dnstest.FaultTruncate), "ok", "ok", cfgURL},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			domain := fmt.Sprintf("case%d.example", i)
			tt.setup(enterprisePrefix + domain)
			tt.setup(servicePrefix + domain)

			u, err := c.LookupEnterpriseTXT(bg(), domain)
			if got := outcome(t, err); got != tt.enterprise {
				t.Errorf("enterprise: outcome %s (%v), want %s", got, err, tt.enterprise)
			}
			if tt.enterprise == "ok" && u != tt.wantURL {
				t.Errorf("enterprise: URL %q, want %q", u, tt.wantURL)
			}
			// X-DNS-3: the same rules for Service records.
			u, err = c.LookupServiceTXT(bg(), domain)
			if got := outcome(t, err); got != tt.service {
				t.Errorf("service: outcome %s (%v), want %s", got, err, tt.service)
			}
			if tt.service == "ok" && u != tt.wantURL {
				t.Errorf("service: URL %q, want %q", u, tt.wantURL)
			}
		})
	}
}

// Multi-string TXT records are joined without separators; several strings in
// several records are kept apart.
func TestLookupMultiString(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, nil)
	srv.SetTXTStrings("_agentpass.multi.example", 60, [][]string{{"https://ap.", "example.com", "/config"}})
	u, err := c.LookupEnterpriseTXT(bg(), "multi.example")
	if err != nil || u != "https://ap.example.com/config" {
		t.Errorf("got %q, %v", u, err)
	}
	long := "https://ap.example.com/" + strings.Repeat("p", 600)
	srv.SetTXT("_agentpass.long.example", 60, long) // split in 255-byte strings
	u, err = c.LookupEnterpriseTXT(bg(), "long.example")
	if err != nil || u != long {
		t.Errorf("long value: got %d bytes, %v", len(u), err)
	}
	// Escapes in the wire data come back as raw bytes: the quote makes the
	// value invalid rather than being read as a separator.
	srv.SetTXT("_agentpass.quote.example", 60, `https://ap.example.com/"x`)
	if _, err := c.LookupEnterpriseTXT(bg(), "quote.example"); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("quote: %v, want ErrInvalidRecord", err)
	}
}

// G-25: domains are case-insensitive and IDN names are queried in punycode.
func TestLookupCanonicalNames(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, nil)
	srv.SetTXT("_agentpass.xn--bcher-kva.example", 60, cfgURL)
	for _, d := range []string{"BÜCHER.example", "bücher.example.", "xn--bcher-kva.EXAMPLE"} {
		u, err := c.LookupEnterpriseTXT(bg(), d)
		if err != nil || u != cfgURL {
			t.Errorf("%q: got %q, %v", d, u, err)
		}
	}
	if n := srv.Queries("_agentpass.xn--bcher-kva.example"); n != 1 {
		t.Errorf("queries = %d, want 1 (one cache entry for all spellings)", n)
	}
	for _, d := range []string{"", "127.0.0.1", "[::1]", "localhost", "a b.example", "-x.example", "ex_ample.com"} {
		if _, err := c.LookupEnterpriseTXT(bg(), d); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: %v, want ErrInvalidName", d, err)
		}
	}
}

// G-10: SERVFAIL is a failure, never "no record"; the lookup error says why.
func TestServFailIsNotNoRecord(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, nil)
	srv.SetFault("_agentpass.down.example", dnstest.FaultServFail)
	_, err := c.LookupEnterpriseTXT(bg(), "down.example")
	if errors.Is(err, ErrNoRecord) || !errors.Is(err, ErrLookupFailed) {
		t.Fatalf("err = %v, want ErrLookupFailed and not ErrNoRecord", err)
	}
	var le *LookupError
	if !errors.As(err, &le) || le.Rcode != dns.RcodeServerFailure || le.Name != "_agentpass.down.example." || le.Timeout {
		t.Errorf("LookupError = %+v", le)
	}
	// A failure is not cached: the next lookup asks again and succeeds.
	srv.SetFault("_agentpass.down.example", dnstest.FaultNone)
	srv.SetTXT("_agentpass.down.example", 60, "none")
	if _, err := c.LookupEnterpriseTXT(bg(), "down.example"); !errors.Is(err, ErrDelegationDisabled) {
		t.Errorf("after recovery: %v, want ErrDelegationDisabled", err)
	}

	srv.SetFault("_agentpass.slow.example", dnstest.FaultTimeout)
	_, err = c.LookupEnterpriseTXT(bg(), "slow.example")
	if !errors.As(err, &le) || !le.Timeout || errors.Is(err, ErrNoRecord) {
		t.Errorf("timeout: %v", err)
	}
}

// Each nameserver is tried in turn; the lookup fails only when all fail.
func TestNameserverFallback(t *testing.T) {
	bad, good := dnstest.NewServer(t), dnstest.NewServer(t)
	const name = "_agentpass-service.api.example"
	bad.SetFault(name, dnstest.FaultServFail)
	good.SetTXT(name, 60, cfgURL)
	c, _ := newTestClient(t, bad, func(cfg *Config) {
		cfg.Nameservers = []string{bad.Nameserver(), good.Nameserver()}
	})
	if u, err := c.LookupServiceTXT(bg(), "api.example"); err != nil || u != cfgURL {
		t.Fatalf("got %q, %v", u, err)
	}
	if bad.Queries(name) != 1 || good.Queries(name) != 1 {
		t.Errorf("queries bad=%d good=%d, want 1 and 1", bad.Queries(name), good.Queries(name))
	}

	// A timeout at the first also moves on.
	bad.SetFault("_agentpass-service.b.example", dnstest.FaultTimeout)
	good.SetTXT("_agentpass-service.b.example", 60, cfgURL)
	if u, err := c.LookupServiceTXT(bg(), "b.example"); err != nil || u != cfgURL {
		t.Fatalf("after timeout: got %q, %v", u, err)
	}

	// NXDOMAIN from the first is an answer: the second is not asked.
	good.SetTXT("_agentpass-service.c.example", 60, cfgURL)
	if _, err := c.LookupServiceTXT(bg(), "c.example"); !errors.Is(err, ErrNoRecord) {
		t.Errorf("NXDOMAIN at first: %v", err)
	}
	if n := good.Queries("_agentpass-service.c.example"); n != 0 {
		t.Errorf("second nameserver asked %d times after NXDOMAIN", n)
	}

	good.SetFault("_agentpass-service.d.example", dnstest.FaultRefused)
	bad.SetFault("_agentpass-service.d.example", dnstest.FaultServFail)
	_, err := c.LookupServiceTXT(bg(), "d.example")
	var le *LookupError
	if !errors.As(err, &le) || le.Server != good.Nameserver() || le.Rcode != dns.RcodeRefused {
		t.Errorf("all fail: %v", err)
	}
}

// Truncated UDP answers are retried over TCP.
func TestTruncationFallsBackToTCP(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, nil)
	const name = "_agentpass.tc.example"
	srv.SetTXT(name, 60, cfgURL)
	srv.SetFault(name, dnstest.FaultTruncate)
	if u, err := c.LookupEnterpriseTXT(bg(), "tc.example"); err != nil || u != cfgURL {
		t.Fatalf("got %q, %v", u, err)
	}
	if srv.Queries(name) != 2 || srv.TCPQueries(name) != 1 {
		t.Errorf("queries = %d (TCP %d), want 2 (TCP 1)", srv.Queries(name), srv.TCPQueries(name))
	}

	// A really large RRset: more than the advertised UDP size.
	var vals []string
	for i := range 12 {
		vals = append(vals, fmt.Sprintf("junk-%d-%s", i, strings.Repeat("x", 200)))
	}
	srv.SetTXT("_agentpass.big.example", 60, append(vals, cfgURL)...)
	if u, err := c.LookupEnterpriseTXT(bg(), "big.example"); err != nil || u != cfgURL {
		t.Fatalf("big: got %q, %v", u, err)
	}
	if srv.TCPQueries("_agentpass.big.example") != 1 {
		t.Errorf("big answer not retried over TCP")
	}
}

// X-DNS-9, G-28: TXT answers cached by TTL with a floor and a cap; negative
// answers by the SOA minimum, capped at five minutes; advanced by a fake
// clock.
func TestTXTCacheExpiry(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, clk := newTestClient(t, srv, nil)

	tests := []struct {
		name    string
		ttl     uint32
		negTTL  uint32
		set     bool
		lifeMin time.Duration // still cached just before this
	}{
		{"TTL 60", 60, 0, true, 60 * time.Second},
		{"TTL 0 gets the 5s floor", 0, 0, true, 5 * time.Second},
		{"TTL 1 day capped at 1h", 86400, 0, true, time.Hour},
		{"NXDOMAIN SOA 30", 0, 30, false, 30 * time.Second},
		{"NXDOMAIN SOA 1 day capped at 5 min", 0, 86400, false, 5 * time.Minute},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			domain := fmt.Sprintf("ttl%d.example", i)
			name := enterprisePrefix + domain
			srv.SetNegativeTTL(tt.negTTL)
			if tt.set {
				srv.SetTXT(name, tt.ttl, cfgURL)
			}
			lookup := func() {
				t.Helper()
				if _, err := c.LookupEnterpriseTXT(bg(), domain); err != nil && !errors.Is(err, ErrNoRecord) {
					t.Fatal(err)
				}
			}
			lookup()
			clk.Advance(tt.lifeMin - time.Second)
			lookup()
			if n := srv.Queries(name); n != 1 {
				t.Errorf("before expiry: %d queries, want 1", n)
			}
			clk.Advance(time.Second)
			lookup()
			if n := srv.Queries(name); n != 2 {
				t.Errorf("at expiry: %d queries, want 2", n)
			}
		})
	}

	// A changed record is seen once the old answer expires.
	srv.SetTXT("_agentpass.change.example", 10, cfgURL)
	if u, _ := c.LookupEnterpriseTXT(bg(), "change.example"); u != cfgURL {
		t.Fatalf("first: %q", u)
	}
	srv.SetTXT("_agentpass.change.example", 10, "none")
	if u, err := c.LookupEnterpriseTXT(bg(), "change.example"); u != cfgURL || err != nil {
		t.Errorf("cached: %q, %v", u, err)
	}
	clk.Advance(10 * time.Second)
	if _, err := c.LookupEnterpriseTXT(bg(), "change.example"); !errors.Is(err, ErrDelegationDisabled) {
		t.Errorf("after expiry: %v, want ErrDelegationDisabled", err)
	}
}

// The cache is bounded.
func TestTXTCacheBounded(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, func(cfg *Config) { cfg.CacheSize = 3 })
	for i := range 10 {
		d := fmt.Sprintf("b%d.example", i)
		srv.SetTXT(enterprisePrefix+d, 300, cfgURL)
		if _, err := c.LookupEnterpriseTXT(bg(), d); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.txtCache.len(); n != 3 {
		t.Errorf("cache holds %d entries, want 3", n)
	}
	// The most recent entries stayed.
	if _, err := c.LookupEnterpriseTXT(bg(), "b9.example"); err != nil || srv.Queries(enterprisePrefix+"b9.example") != 1 {
		t.Errorf("b9 evicted")
	}
	if _, err := c.LookupEnterpriseTXT(bg(), "b0.example"); err != nil || srv.Queries(enterprisePrefix+"b0.example") != 2 {
		t.Errorf("b0 not evicted")
	}
}

// 100 concurrent lookups of one name cause one query: the query is held at
// the server until every caller has joined the lookup.
func TestConcurrentLookupsCollapse(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, func(cfg *Config) { cfg.DNSTimeout = time.Minute })
	const name = "_agentpass.herd.example"
	srv.SetTXT(name, 60, cfgURL)
	arrived, release := srv.Hold(name)
	defer release()
	const callers = 100
	joined := make(chan struct{}, callers)
	c.joined = func(string) { joined <- struct{}{} }

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			u, err := c.LookupEnterpriseTXT(bg(), "herd.example")
			if err == nil && u != cfgURL {
				err = fmt.Errorf("URL %q", u)
			}
			errs <- err
		})
	}
	for range callers {
		<-joined
	}
	<-arrived
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Queries(name); n != 1 {
		t.Errorf("%d upstream queries, want 1", n)
	}
}

// One caller's cancellation does not fail the others sharing the lookup, and
// the cancelled caller sees a lookup failure, never "no record". The query
// is held at the server until the short caller has given up.
func TestCancelledCallerDoesNotFailOthers(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, func(cfg *Config) { cfg.DNSTimeout = time.Minute })
	const name = "_agentpass.shared.example"
	srv.SetTXT(name, 60, cfgURL)
	arrived, release := srv.Hold(name)
	defer release()
	joined := make(chan struct{}, 2)
	c.joined = func(string) { joined <- struct{}{} }

	ctx, cancel := context.WithTimeout(bg(), 20*time.Millisecond)
	defer cancel()
	short := make(chan error, 1)
	go func() {
		_, err := c.LookupEnterpriseTXT(ctx, "shared.example")
		short <- err
	}()
	<-arrived // the short caller's lookup is at the server
	patient := make(chan error, 1)
	var u string
	go func() {
		var err error
		u, err = c.LookupEnterpriseTXT(bg(), "shared.example")
		patient <- err
	}()
	<-joined
	<-joined // both callers share the lookup
	shortErr := <-short
	release()
	if err := <-patient; err != nil || u != cfgURL {
		t.Errorf("patient caller: %q, %v", u, err)
	}
	var le *LookupError
	if !errors.As(shortErr, &le) || !le.Timeout || !errors.Is(shortErr, context.DeadlineExceeded) || errors.Is(shortErr, ErrNoRecord) {
		t.Errorf("cancelled caller: %v", shortErr)
	}
	if n := srv.Queries(name); n != 1 {
		t.Errorf("%d upstream queries, want 1", n)
	}
}

// X-DNS-12: with RequireDNSSEC, answers must carry the AD bit (which the
// resolver sets only when asked with DO/AD); without it the lookup fails,
// also for NXDOMAIN, which is then not "no record".
func TestRequireDNSSEC(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, func(cfg *Config) { cfg.RequireDNSSEC = true })
	plain, _ := newTestClient(t, srv, nil)
	srv.SetTXT("_agentpass.signed.example", 60, cfgURL)

	_, err := c.LookupEnterpriseTXT(bg(), "signed.example")
	var le *LookupError
	if !errors.As(err, &le) || !strings.Contains(le.Reason, "AD bit") {
		t.Errorf("unsigned: %v, want a lookup failure about the AD bit", err)
	}
	if _, err := c.LookupEnterpriseTXT(bg(), "missing.example"); !errors.Is(err, ErrLookupFailed) || errors.Is(err, ErrNoRecord) {
		t.Errorf("unauthenticated NXDOMAIN: %v, want ErrLookupFailed", err)
	}
	if u, err := plain.LookupEnterpriseTXT(bg(), "signed.example"); err != nil || u != cfgURL {
		t.Errorf("without RequireDNSSEC: %q, %v", u, err)
	}

	srv.SetAuthenticated(true)
	if u, err := c.LookupEnterpriseTXT(bg(), "signed.example"); err != nil || u != cfgURL {
		t.Errorf("signed: %q, %v", u, err)
	}
	if _, err := c.LookupEnterpriseTXT(bg(), "missing.example"); !errors.Is(err, ErrNoRecord) {
		t.Errorf("authenticated NXDOMAIN: %v, want ErrNoRecord", err)
	}
}

func TestNewValidation(t *testing.T) {
	ns := []string{"127.0.0.1:53"}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero with nameservers", Config{Nameservers: ns}, true},
		{"port added", Config{Nameservers: []string{"192.0.2.1", "[2001:db8::1]"}}, true},
		{"negative timeout", Config{Nameservers: ns, DNSTimeout: -1}, false},
		{"MaxTTL over 1h", Config{Nameservers: ns, MaxTTL: 2 * time.Hour}, false},
		{"MaxAge over 1h", Config{Nameservers: ns, MaxAge: time.Hour + 1}, false},
		{"MaxNegativeTTL over 5min", Config{Nameservers: ns, MaxNegativeTTL: 10 * time.Minute}, false},
		{"MinTTL over MaxTTL", Config{Nameservers: ns, MinTTL: 2 * time.Minute, MaxTTL: time.Minute}, false},
		{"negative body", Config{Nameservers: ns, MaxBodyBytes: -1}, false},
		{"negative cache", Config{Nameservers: ns, CacheSize: -1}, false},
		{"empty nameserver", Config{Nameservers: []string{""}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New: %v, want ok=%v", err, tt.ok)
			}
			if err == nil && tt.name == "port added" {
				want := []string{"192.0.2.1:53", "[2001:db8::1]:53"}
				if fmt.Sprint(c.nameservers) != fmt.Sprint(want) {
					t.Errorf("nameservers = %v, want %v", c.nameservers, want)
				}
			}
		})
	}
}

// TestLookupCNAMELoopIsFailure: G-10 — a CNAME chain that loops, or is
// longer than the client follows, is a DNS failure, never "no record":
// read as no record it would let a Service fall back from the domain's
// Enterprise Authority to Service or federated Authorities.
func TestLookupCNAMELoopIsFailure(t *testing.T) {
	srv := dnstest.NewServer(t)
	c, _ := newTestClient(t, srv, nil)
	loop := enterprisePrefix + "loop.example"
	srv.SetCNAME(loop, 60, "a.loop.example")
	srv.SetCNAME("a.loop.example", 60, loop)
	long := enterprisePrefix + "long.example"
	prev := long
	for i := range maxCNAMEs + 1 {
		next := fmt.Sprintf("hop%d.long.example", i)
		srv.SetCNAME(prev, 60, next)
		prev = next
	}
	srv.SetTXT(prev, 60, "https://ap.example.com/config")
	for _, domain := range []string{"loop.example", "long.example"} {
		_, err := c.LookupEnterpriseTXT(bg(), domain)
		if got := outcome(t, err); got != "lookup-failed" {
			t.Errorf("%s: outcome %s (%v), want lookup-failed", domain, got, err)
		}
	}
}
