package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/internal/netguard"
	"github.com/agentpass-go/agentpass/internal/outbound"
	"github.com/agentpass-go/agentpass/pass"
)

const (
	svcURL  = "https://api.example.com/.well-known/agentpass-service"
	authURL = "https://agentpass.example.com/.well-known/agentpass"
)

func TestServiceConfiguration(t *testing.T) {
	e := newEnv(t, nil)
	e.web.set("/.well-known/agentpass-service", route{body: serviceConfigJSON, cacheControl: "max-age=60"})
	got, err := e.c.ServiceConfiguration(bg(), svcURL)
	if err != nil {
		t.Fatal(err)
	}
	var want pass.ServiceConfiguration
	if err := pass.Decode([]byte(serviceConfigJSON), &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("configuration (-want +got):\n%s", diff)
	}
	// The caller's copy is its own: changing it does not change the cache.
	got.Service.Origin = "https://evil.example.com"
	got.Trust.ServiceAuthority.Authority = "https://evil.example.com"
	got.Trust.TrustedFederatedAuthorities[0].Authority = "https://evil.example.com"
	again, err := e.c.ServiceConfiguration(bg(), svcURL)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want, again); diff != "" {
		t.Errorf("cached configuration changed (-want +got):\n%s", diff)
	}
	if n := e.web.hitCount("/.well-known/agentpass-service"); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

func TestAuthorityConfiguration(t *testing.T) {
	e := newEnv(t, nil)
	e.web.set("/.well-known/agentpass", route{body: authorityConfigJSON})
	got, err := e.c.AuthorityConfiguration(bg(), authURL)
	if err != nil {
		t.Fatal(err)
	}
	if got.TrustMode != pass.TrustEnterprise || !got.AllowsServiceAuthorities() || got.Approval.Modes[0] != "poll" {
		t.Errorf("got %+v", got)
	}
	*got.Policy.AllowServiceAuthorities = false
	got.Approval.Modes[0] = "x"
	again, _ := e.c.AuthorityConfiguration(bg(), authURL)
	if !again.AllowsServiceAuthorities() || again.Approval.Modes[0] != "poll" {
		t.Error("cached configuration changed through the caller's copy")
	}
}

// X-DNS-9, X-DNS-10, G-28: documents are cached by Cache-Control max-age,
// with a default, a floor and a one-hour cap; an expired document is never
// served, even when the refresh fails.
func TestDocumentCacheLifetime(t *testing.T) {
	tests := []struct {
		name         string
		cacheControl string
		age          string
		life         time.Duration
	}{
		{"max-age", "public, max-age=60", "", 60 * time.Second},
		{"absent: default 5 min", "", "", 5 * time.Minute},
		{"no-store: floor", "no-store", "", 5 * time.Second},
		{"no-cache: floor", "max-age=600, no-cache", "", 5 * time.Second},
		{"one day capped at 1h", "max-age=86400", "", time.Hour},
		{"max-age less Age", "max-age=60", "50", 10 * time.Second},
		{"malformed max-age: floor", "max-age=soon", "", 5 * time.Second},
		{"max-age=0: floor", "max-age=0", "", 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			const path = "/.well-known/agentpass"
			e.web.set(path, route{body: authorityConfigJSON, cacheControl: tt.cacheControl, age: tt.age})
			fetch := func() error {
				_, err := e.c.AuthorityConfiguration(bg(), authURL)
				return err
			}
			if err := fetch(); err != nil {
				t.Fatal(err)
			}
			e.clk.Advance(tt.life - time.Second)
			if err := fetch(); err != nil || e.web.hitCount(path) != 1 {
				t.Fatalf("before expiry: %d fetches (%v), want 1", e.web.hitCount(path), err)
			}
			e.clk.Advance(time.Second)
			e.web.set(path, route{status: 500, body: "boom"})
			err := fetch()
			if e.web.hitCount(path) != 2 {
				t.Errorf("at expiry: %d fetches, want 2", e.web.hitCount(path))
			}
			var fe *FetchError
			if !errors.As(err, &fe) || fe.StatusCode != 500 {
				t.Errorf("failed refresh: %v, want a FetchError with status 500 (no stale document)", err)
			}
			if strings.Contains(fmt.Sprint(err), "boom") {
				t.Errorf("error echoes the body: %v", err)
			}
		})
	}
}

// G-27, X-DNS-13, X-DNS-14, X-VER-1, X-VER-2: what a fetch refuses.
func TestFetchHygiene(t *testing.T) {
	e := newEnv(t, func(cfg *Config) { cfg.MaxBodyBytes = 4096 })
	big := `{"version":"0.1","pad":"` + strings.Repeat("x", 5000) + `"}`
	v09 := strings.Replace(authorityConfigJSON, `"version": "0.1"`, `"version": "0.9", "future_member": {"a": 1}`, 1)
	v10 := strings.Replace(authorityConfigJSON, `"version": "0.1"`, `"version": "1.0"`, 1)
	httpEndpoint := strings.Replace(authorityConfigJSON, `"https://agentpass.example.com/validate"`, `"http://agentpass.example.com/validate"`, 1)
	e.web.set("/ok", route{body: authorityConfigJSON})
	e.web.set("/charset", route{body: authorityConfigJSON, contentType: "application/json; charset=utf-8"})
	e.web.set("/html", route{body: authorityConfigJSON, contentType: "text/html"})
	e.web.set("/jwkset-type", route{body: authorityConfigJSON, contentType: "application/jwk-set+json"})
	e.web.set("/no-type", route{body: authorityConfigJSON, contentType: "-"})
	e.web.set("/big", route{body: big})
	e.web.set("/404", route{status: 404, body: authorityConfigJSON})
	e.web.set("/v09", route{body: v09})
	e.web.set("/v10", route{body: v10})
	e.web.set("/http-endpoint", route{body: httpEndpoint})
	e.web.set("/not-json", route{body: "<html>"})
	e.web.set("/redirect-same", route{status: 302, location: "/ok"})
	e.web.set("/redirect-other", route{status: 302, location: "https://other.example.com/ok"})
	e.web.set("/redirect-http", route{status: 302, location: "http://agentpass.example.com/ok"})
	e.web.set("/loop", route{status: 302, location: "/loop"})

	base := "https://agentpass.example.com"
	tests := []struct {
		name   string
		url    string
		want   string // outcome class
		target error  // also matched with errors.Is, when set
	}{
		{"ok", base + "/ok", "ok", nil},
		{"Content-Type with charset", base + "/charset", "ok", nil},
		{"0.9 with unknown members (X-VER-2)", base + "/v09", "ok", nil},
		{"same-origin redirect", base + "/redirect-same", "ok", nil},
		{"http URL", "http://agentpass.example.com/ok", "invalid-name", nil},
		{"URL with userinfo", "https://u@agentpass.example.com/ok", "invalid-name", nil},
		{"text/html", base + "/html", "fetch-failed", nil},
		{"jwk-set type for a configuration", base + "/jwkset-type", "fetch-failed", nil},
		{"no Content-Type", base + "/no-type", "fetch-failed", nil},
		{"oversized body", base + "/big", "fetch-failed", nil},
		{"status 404", base + "/404", "fetch-failed", nil},
		{"cross-origin redirect", base + "/redirect-other", "fetch-failed", outbound.ErrRedirect},
		{"redirect to http", base + "/redirect-http", "fetch-failed", outbound.ErrRedirect},
		{"redirect loop", base + "/loop", "fetch-failed", outbound.ErrRedirect},
		{"version 1.0 (X-VER-1)", base + "/v10", "invalid-document", pass.ErrUnsupportedVersion},
		{"http endpoint (X-DNS-15)", base + "/http-endpoint", "invalid-document", pass.ErrInvalidDocument},
		{"not JSON", base + "/not-json", "invalid-document", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.c.AuthorityConfiguration(bg(), tt.url)
			if got := outcome(t, err); got != tt.want {
				t.Fatalf("outcome %s (%v), want %s", got, err, tt.want)
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("err = %v, want it to match %v", err, tt.target)
			}
		})
	}
	if n := e.web.hitCount("/loop"); n != maxRedirects+1 {
		t.Errorf("redirect loop followed %d times, want %d", n, maxRedirects+1)
	}
	// "/ok" directly, then as the target of the same-origin redirect
	// (cached per requested URL).
	if n := e.web.hitCount("/ok"); n != 2 {
		t.Errorf("/ok fetched %d times, want 2", n)
	}
}

// X-DNS-13: a server that speaks only TLS 1.1 is refused.
func TestFetchRefusesOldTLS(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(authorityConfigJSON))
	}))
	ts.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	c, err := New(Config{Nameservers: []string{"127.0.0.1:53"}, HTTPClient: ts.Client(), InsecureAllowPrivateNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AuthorityConfiguration(bg(), ts.URL+"/")
	if !errors.Is(err, ErrFetchFailed) || !strings.Contains(err.Error(), "version") {
		t.Errorf("err = %v, want a TLS version failure", err)
	}
	// The caller's client still allows what it allowed: it was cloned.
	if cfg := ts.Client().Transport.(*http.Transport).TLSClientConfig; cfg.MinVersion != 0 {
		t.Errorf("caller's TLS config modified: MinVersion %x", cfg.MinVersion)
	}
}

// X-DNS-14: certificates are verified: chain and name.
func TestFetchVerifiesCertificates(t *testing.T) {
	e := newEnv(t, nil)
	e.web.set("/ok", route{body: authorityConfigJSON})

	// A pool without the server's certificate.
	tr := e.web.mappedClient().Transport.(*http.Transport)
	tr.TLSClientConfig.RootCAs = x509.NewCertPool()
	c, err := New(Config{Nameservers: []string{"127.0.0.1:53"}, HTTPClient: &http.Client{Transport: tr}, InsecureAllowPrivateNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AuthorityConfiguration(bg(), "https://agentpass.example.com/ok")
	var uae x509.UnknownAuthorityError
	if !errors.Is(err, ErrFetchFailed) || !errors.As(err, &uae) {
		t.Errorf("unknown CA: %v, want an x509.UnknownAuthorityError", err)
	}

	// A trusted certificate for another name (httptest's covers example.com).
	_, err = e.c.AuthorityConfiguration(bg(), "https://agentpass.example.net/ok")
	var he x509.HostnameError
	if !errors.Is(err, ErrFetchFailed) || !errors.As(err, &he) {
		t.Errorf("wrong name: %v, want an x509.HostnameError", err)
	}

	// No insecure switch.
	insecure := e.web.Client()
	insecure.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true
	if _, err := New(Config{Nameservers: []string{"127.0.0.1:53"}, HTTPClient: insecure}); err == nil {
		t.Error("New accepted InsecureSkipVerify")
	}
	old := e.web.Client()
	old.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	if _, err := New(Config{Nameservers: []string{"127.0.0.1:53"}, HTTPClient: old}); err == nil {
		t.Error("New accepted MaxVersion TLS 1.1")
	}
	if _, err := New(Config{Nameservers: []string{"127.0.0.1:53"}, HTTPClient: &http.Client{Transport: roundTripperFunc(nil)}}); err == nil {
		t.Error("New accepted a Transport it cannot harden")
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// G-27: loopback and private destinations are refused unless the insecure
// option allows them; a caller's dialer, which may tunnel to an internal
// name behind a public address, is refused in New (review Low 1b).
func TestFetchRefusesPrivateAddresses(t *testing.T) {
	web := newDocServer(t)
	web.set("/ok", route{body: authorityConfigJSON})
	if _, err := New(Config{Nameservers: []string{"127.0.0.1:53"}, HTTPClient: web.mappedClient()}); err == nil || !strings.Contains(err.Error(), "WrapTransport") {
		t.Errorf("caller's dialer: New err = %v, want a refusal naming WrapTransport", err)
	}
	guarded := web.Client().Transport.(*http.Transport).Clone()
	guarded.DialContext = nil // httptest's maps example.com
	for _, tt := range []struct {
		name   string
		client *http.Client
		url    string
	}{
		{"default dialer", &http.Client{Transport: guarded}, web.URL + "/ok"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Config{Nameservers: []string{"127.0.0.1:53"}, HTTPClient: tt.client})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.AuthorityConfiguration(bg(), tt.url)
			if !errors.Is(err, ErrForbiddenAddress) || !errors.Is(err, ErrFetchFailed) {
				t.Errorf("err = %v, want ErrForbiddenAddress", err)
			}
			if n := web.hitCount("/ok"); n != 0 {
				t.Errorf("server reached %d times", n)
			}
		})
	}
}

func TestPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8":                     true,
		"2606:4700:4700::1111":        true,
		"127.0.0.1":                   false,
		"10.1.2.3":                    false,
		"172.16.0.1":                  false,
		"192.168.1.1":                 false,
		"169.254.169.254":             false, // cloud metadata
		"100.64.0.1":                  false,
		"0.0.0.0":                     false,
		"255.255.255.255":             false,
		"224.0.0.1":                   false,
		"::1":                         false,
		"::":                          false,
		"fe80::1":                     false,
		"fc00::1":                     false,
		"::ffff:127.0.0.1":            false,
		"::ffff:8.8.8.8":              true,
		"64:ff9b::a9fe:a9fe":          false, // NAT64 of 169.254.169.254
		"64:ff9b::808:808":            true,
		"2001:db8::1":                 false,
		"198.18.0.1":                  false,
		"fd00:ec2::254":               false,
		"ff02::1":                     false,
		"192.0.0.8":                   false,
		"203.0.113.9":                 false,
		"2001:4860:4860:0:0:0:0:8888": true,
	} {
		if got := netguard.PublicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

// 100 goroutines fetching at once cause one fetch; a caller giving up does
// not fail the others. The answer is held until every caller has joined
// the fetch and the impatient one has given up.
func TestConcurrentFetchesCollapse(t *testing.T) {
	e := newEnv(t, nil)
	const path = "/.well-known/agentpass"
	gate := make(chan struct{})
	e.web.set(path, route{body: authorityConfigJSON, gate: gate})
	const callers = 100
	joined := make(chan struct{}, callers)
	e.c.joined = func(string) { joined <- struct{}{} }
	short, cancel := context.WithTimeout(bg(), 10*time.Millisecond)
	defer cancel()
	impatient := make(chan error, 1)
	go func() {
		_, err := e.c.AuthorityConfiguration(short, authURL)
		impatient <- err
	}()
	<-joined
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers - 1 {
		wg.Go(func() {
			_, err := e.c.AuthorityConfiguration(bg(), authURL)
			errs <- err
		})
	}
	for range callers - 1 {
		<-joined
	}
	if err := <-impatient; !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrFetchFailed) {
		t.Errorf("impatient caller: %v", err)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := e.web.hitCount(path); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

// G-27: a server that never answers is cut off by FetchTimeout, not by the
// caller's context.
func TestFetchTimeout(t *testing.T) {
	e := newEnv(t, func(cfg *Config) { cfg.FetchTimeout = 100 * time.Millisecond })
	e.web.set("/slow", route{body: authorityConfigJSON, gate: make(chan struct{})}) // never opens
	ctx, cancel := context.WithTimeout(bg(), time.Minute)
	defer cancel()
	_, err := e.c.AuthorityConfiguration(ctx, "https://agentpass.example.com/slow")
	if !errors.Is(err, ErrFetchFailed) {
		t.Errorf("err = %v, want ErrFetchFailed", err)
	}
	if ctx.Err() != nil {
		t.Errorf("the caller's one-minute context ended first: FetchTimeout did not apply")
	}
}

func TestDocumentCacheBounded(t *testing.T) {
	e := newEnv(t, func(cfg *Config) { cfg.CacheSize = 2 })
	e.web.set("/a", route{body: authorityConfigJSON})
	for i := range 5 {
		if _, err := e.c.AuthorityConfiguration(bg(), fmt.Sprintf("https://agentpass.example.com/a?i=%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.c.docCache.len(); n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
}
