// Package outboundtest is the conformance suite of the outbound HTTP client
// policy.
//
// # Overview
//
// Each role runs [Run] against the client it really uses for its protocol
// calls, so a role that builds its client differently cannot quietly lose
// a protection. The suite uses real TLS servers from httptest on loopback
// and checks TLS versions, refused configurations, redirects, private
// addresses, transport wrappers and connection reuse.
//
// # Usage
//
// From an internal test of the role's package:
//
//	outboundtest.Run(t, outboundtest.Role{
//		New: func(o outboundtest.Options) (outboundtest.Built, error) {
//			c, err := New(Config{HTTPClient: o.HTTPClient, WrapTransport: o.WrapTransport,
//				InsecureAllowPrivateNetworks: o.AllowPrivate /* , the role's required fields */})
//			if err != nil {
//				return outboundtest.Built{}, err
//			}
//			return outboundtest.Built{Client: c.http}, nil
//		},
//		Forbidden: ErrForbiddenAddress,
//	})
package outboundtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentpass-go/agentpass/internal/netguard"
	"github.com/agentpass-go/agentpass/internal/outbound"
)

// Options are what the suite varies in a role's Config.
type Options struct {
	HTTPClient    *http.Client
	WrapTransport func(http.RoundTripper) http.RoundTripper
	AllowPrivate  bool // Config.InsecureAllowPrivateNetworks
}

// Built is what a role built from Options exposes to the suite.
type Built struct {
	// Client is the client of the role's protocol calls.
	Client *http.Client
	// Fetch, when set, fetches an Authority configuration at url through
	// the role's default Discovery (built because Options gave none).
	Fetch func(ctx context.Context, url string) error
}

// Role describes the role under test.
type Role struct {
	// New builds the role (New(Config{...})) from o.
	New func(o Options) (Built, error)
	// Forbidden is the role's exported ErrForbiddenAddress.
	Forbidden error
	// SameOriginRedirects is how many same-origin redirects the role
	// follows (0: none, the 3xx answer is returned).
	SameOriginRedirects int
}

// Run runs the suite.
func Run(t *testing.T, r Role) {
	t.Helper()
	if !errors.Is(r.Forbidden, netguard.ErrForbiddenAddress) || r.Forbidden != netguard.ErrForbiddenAddress {
		t.Fatalf("the role's ErrForbiddenAddress is not netguard.ErrForbiddenAddress: %v", r.Forbidden)
	}
	t.Run("TLS11Refused", func(t *testing.T) { testTLS11(t, r) })
	t.Run("UnsafeConfigRefused", func(t *testing.T) { testUnsafeConfig(t, r) })
	t.Run("Redirects", func(t *testing.T) { testRedirects(t, r) })
	t.Run("PrivateAddresses", func(t *testing.T) { testPrivate(t, r) })
	t.Run("Wrappers", func(t *testing.T) { testWrappers(t, r) })
	t.Run("WrapTransport", func(t *testing.T) { testWrapTransport(t, r) })
	t.Run("KeepAlive", func(t *testing.T) { testKeepAlive(t, r) })
}

// server is an httptest TLS server counting hits per path.
type server struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newServer(t *testing.T, configure func(*httptest.Server)) *server {
	s := &server{hits: map[string]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		s.hits[req.URL.Path]++
		s.mu.Unlock()
		switch req.URL.Path {
		case "/r":
			http.Redirect(w, req, "/ok", http.StatusFound)
		case "/loop":
			http.Redirect(w, req, "/loop", http.StatusFound)
		case "/elsewhere":
			http.Redirect(w, req, req.URL.Query().Get("to"), http.StatusFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":true}`)
		}
	}))
	if configure != nil {
		configure(s.Server)
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// guardable returns a client trusting s whose Transport has no dialer of
// its own (httptest's maps example.com), so the address check can be
// installed in it.
func (s *server) guardable(t *testing.T) *http.Client {
	tr := s.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = nil
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func (s *server) hitCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func build(t *testing.T, r Role, o Options) Built {
	t.Helper()
	b, err := r.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(b.Client.CloseIdleConnections)
	return b
}

func get(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// testTLS11: a server offering only TLS 1.1 is refused, even when the
// caller's own TLS configuration allowed TLS 1.0: older versions have
// known breaks, and the protocol requires TLS 1.2 or newer.
func testTLS11(t *testing.T, r Role) {
	old := newServer(t, func(s *httptest.Server) {
		s.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
		s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	})
	hc := old.Client()
	hc.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS10
	b := build(t, r, Options{HTTPClient: hc, AllowPrivate: true})
	if _, err := get(b.Client, old.URL+"/ok"); err == nil {
		t.Fatal("a TLS 1.1 server was accepted")
	}
	if n := old.hitCount("/ok"); n != 0 {
		t.Errorf("the TLS 1.1 server answered %d requests", n)
	}
	if got := hc.Transport.(*http.Transport).TLSClientConfig.MinVersion; got != tls.VersionTLS10 {
		t.Errorf("the caller's TLS config was modified: MinVersion %x", got)
	}
}

// testUnsafeConfig: New refuses at startup what it cannot make safe (no
// certificate check, old TLS, a proxy or dialer that could reach internal
// hosts), rather than fail open on every call.
func testUnsafeConfig(t *testing.T, r Role) {
	proxied := http.DefaultTransport.(*http.Transport).Clone() // ProxyFromEnvironment
	if _, err := r.New(Options{HTTPClient: &http.Client{Transport: proxied}}); err == nil {
		t.Error("New accepted a Transport with a Proxy")
	}
	if _, err := r.New(Options{HTTPClient: &http.Client{Transport: proxied}, AllowPrivate: true}); err != nil {
		t.Errorf("New refused a Transport with a Proxy when private networks are allowed: %v", err)
	}
	// A caller's dialer may tunnel (SOCKS5, CONNECT, SSH)
	// while its connections show the tunnel's public address.
	var d net.Dialer
	for name, tr := range map[string]*http.Transport{
		"DialContext":    {DialContext: d.DialContext},
		"DialTLSContext": {DialTLSContext: d.DialContext},
	} {
		if _, err := r.New(Options{HTTPClient: &http.Client{Transport: tr}}); err == nil {
			t.Errorf("New accepted a Transport with its own %s", name)
		}
		if _, err := r.New(Options{HTTPClient: &http.Client{Transport: tr}, AllowPrivate: true}); err != nil {
			t.Errorf("New refused a Transport with its own %s when private networks are allowed: %v", name, err)
		}
	}
	for name, cfg := range map[string]*tls.Config{
		"InsecureSkipVerify":                  {InsecureSkipVerify: true},
		"MaxVersion TLS 1.1":                  {MaxVersion: tls.VersionTLS11},
		"InsecureSkipVerify, private allowed": {InsecureSkipVerify: true},
	} {
		o := Options{HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}
		o.AllowPrivate = name == "InsecureSkipVerify, private allowed"
		if _, err := r.New(o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// testRedirects: none are followed, or (discovery) only same-origin ones,
// at most SameOriginRedirects: a redirect could carry a call to a host
// nobody vetted.
func testRedirects(t *testing.T, r Role) {
	s := newServer(t, nil)
	other := newServer(t, nil)
	b := build(t, r, Options{HTTPClient: s.Client(), AllowPrivate: true})

	status, err := get(b.Client, s.URL+"/elsewhere?to="+other.URL+"/ok")
	if r.SameOriginRedirects == 0 {
		if err != nil || status != http.StatusFound {
			t.Errorf("cross-origin redirect: %d, %v; want the 302 itself", status, err)
		}
	} else if !errors.Is(err, outbound.ErrRedirect) {
		t.Errorf("cross-origin redirect: %d, %v; want ErrRedirect", status, err)
	}
	if n := other.hitCount("/ok"); n != 0 {
		t.Errorf("the other origin received %d requests", n)
	}

	status, err = get(b.Client, s.URL+"/r")
	if r.SameOriginRedirects == 0 {
		if err != nil || status != http.StatusFound || s.hitCount("/ok") != 0 {
			t.Errorf("same-origin redirect: %d, %v, %d hits; want the 302 itself", status, err, s.hitCount("/ok"))
		}
	} else if err != nil || status != http.StatusOK || s.hitCount("/ok") != 1 {
		t.Errorf("same-origin redirect: %d, %v, %d hits; want it followed", status, err, s.hitCount("/ok"))
	}

	_, err = get(b.Client, s.URL+"/loop")
	if want := r.SameOriginRedirects + 1; s.hitCount("/loop") != want {
		t.Errorf("redirect loop: %d requests, want %d", s.hitCount("/loop"), want)
	}
	if r.SameOriginRedirects > 0 && !errors.Is(err, outbound.ErrRedirect) {
		t.Errorf("redirect loop: %v, want ErrRedirect", err)
	}
}

// testPrivate: loopback is refused, with the role's sentinel, unless the
// switch is set: peers' URLs come from anyone's DNS and must not reach
// internal services.
func testPrivate(t *testing.T, r Role) {
	s := newServer(t, nil)
	for _, client := range []*http.Client{nil, s.guardable(t)} {
		b := build(t, r, Options{HTTPClient: client})
		_, err := get(b.Client, s.URL+"/ok")
		if !errors.Is(err, r.Forbidden) || !errors.Is(err, netguard.ErrForbiddenAddress) {
			t.Errorf("client %v: err = %v, want ErrForbiddenAddress", client != nil, err)
		}
		if b.Fetch != nil {
			if err := b.Fetch(context.Background(), s.URL+"/ok"); !errors.Is(err, r.Forbidden) {
				t.Errorf("default Discovery: err = %v, want ErrForbiddenAddress", err)
			}
		}
	}
	if n := s.hitCount("/ok"); n != 0 {
		t.Fatalf("the loopback server received %d requests", n)
	}
	b := build(t, r, Options{HTTPClient: s.Client(), AllowPrivate: true})
	if status, err := get(b.Client, s.URL+"/ok"); err != nil || status != http.StatusOK {
		t.Errorf("with the switch: %d, %v", status, err)
	}
}

// recorder is a user's RoundTripper wrapper (otelhttp, a proxy, a
// recorder) that hides what it wraps.
type recorder struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (rt recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.n.Add(1)
	return rt.next.RoundTrip(req)
}

// unwrappable exposes what it wraps, and can be rebuilt around another.
type unwrappable struct{ recorder }

func (rt unwrappable) Unwrap() http.RoundTripper { return rt.next }

func (rt unwrappable) Rewrap(next http.RoundTripper) http.RoundTripper {
	return unwrappable{recorder{next: next, n: rt.n}}
}

// unwrapOnly exposes what it wraps but cannot be rebuilt.
type unwrapOnly struct{ recorder }

func (rt unwrapOnly) Unwrap() http.RoundTripper { return rt.next }

// testWrappers: a wrapper exposing its transport gets the checks installed
// inside (its own copy); one hiding it is refused unless the switch is set.
func testWrappers(t *testing.T, r Role) {
	s := newServer(t, nil)
	inner := s.guardable(t).Transport.(*http.Transport)

	var n atomic.Int64
	w := unwrappable{recorder{next: inner, n: &n}}
	b := build(t, r, Options{HTTPClient: &http.Client{Transport: w}})
	if _, err := get(b.Client, s.URL+"/ok"); !errors.Is(err, r.Forbidden) {
		t.Errorf("Unwrap and Rewrap: err = %v, want ErrForbiddenAddress from the guarded inner transport", err)
	}
	if n.Load() != 1 {
		t.Errorf("Unwrap and Rewrap: the wrapper saw %d requests, want 1", n.Load())
	}
	if inner.DialContext != nil || w.next != inner {
		t.Error("the caller's wrapper or transport was modified")
	}
	b = build(t, r, Options{HTTPClient: &http.Client{Transport: w}, AllowPrivate: true})
	if status, err := get(b.Client, s.URL+"/ok"); err != nil || status != http.StatusOK || n.Load() != 2 {
		t.Errorf("Unwrap and Rewrap, private allowed: %d, %v, %d requests seen", status, err, n.Load())
	}

	for name, rt := range map[string]http.RoundTripper{
		"opaque":      recorder{next: inner, n: &n},
		"Unwrap only": unwrapOnly{recorder{next: inner, n: &n}},
	} {
		if _, err := r.New(Options{HTTPClient: &http.Client{Transport: rt}}); err == nil {
			t.Errorf("%s: New accepted a transport it cannot guard", name)
		}
		n.Store(0)
		b := build(t, r, Options{HTTPClient: &http.Client{Transport: rt}, AllowPrivate: true})
		if status, err := get(b.Client, s.URL+"/ok"); err != nil || status != http.StatusOK || n.Load() != 1 {
			t.Errorf("%s, private allowed: %d, %v, %d requests seen", name, status, err, n.Load())
		}
	}
}

// testWrapTransport: the hook wraps the guarded transport, sees every
// request, and the default Discovery gets it too.
func testWrapTransport(t *testing.T, r Role) {
	s := newServer(t, nil)
	var n atomic.Int64
	hook := func(next http.RoundTripper) http.RoundTripper { return recorder{next: next, n: &n} }

	b := build(t, r, Options{HTTPClient: s.guardable(t), WrapTransport: hook})
	if _, err := get(b.Client, s.URL+"/ok"); !errors.Is(err, r.Forbidden) || n.Load() != 1 {
		t.Errorf("guarded: err = %v, %d requests seen; want ErrForbiddenAddress from inside the hook", err, n.Load())
	}

	n.Store(0)
	b = build(t, r, Options{HTTPClient: s.Client(), WrapTransport: hook, AllowPrivate: true})
	const calls = 5
	for range calls {
		if status, err := get(b.Client, s.URL+"/ok"); err != nil || status != http.StatusOK {
			t.Fatalf("GET: %d, %v", status, err)
		}
	}
	if n.Load() != calls {
		t.Errorf("the hook saw %d of %d requests", n.Load(), calls)
	}
	if b.Fetch != nil {
		// Whether the document is valid does not matter: the fetch must go
		// through the hook.
		_ = b.Fetch(context.Background(), s.URL+"/discovery")
		if n.Load() != calls+1 || s.hitCount("/discovery") != 1 {
			t.Errorf("default Discovery: the hook saw %d requests, the server %d; want it used", n.Load()-calls, s.hitCount("/discovery"))
		}
	}
	if _, err := r.New(Options{WrapTransport: func(http.RoundTripper) http.RoundTripper { return nil }}); err == nil {
		t.Error("New accepted a WrapTransport returning nil")
	}
}

// testKeepAlive: calls to an HTTP/1.1 peer reuse connections, in sequence
// and in parallel bursts, instead of one TLS handshake per call.
func testKeepAlive(t *testing.T, r Role) {
	var conns atomic.Int64
	s := newServer(t, func(s *httptest.Server) {
		s.EnableHTTP2 = false
		s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
	})
	b := build(t, r, Options{HTTPClient: s.Client(), AllowPrivate: true})
	const sequential, bursts, width = 20, 6, 16
	for range sequential {
		if status, err := get(b.Client, s.URL+"/ok"); err != nil || status != http.StatusOK {
			t.Fatalf("GET: %d, %v", status, err)
		}
	}
	// Usually 1; a call may dial while the previous connection is still
	// being returned to the pool by net/http's read loop.
	if got := conns.Load(); got > sequential/4 {
		t.Errorf("%d sequential calls opened %d connections, want about 1", sequential, got)
	}
	for range bursts {
		var wg sync.WaitGroup
		errs := make(chan error, width)
		for range width {
			wg.Go(func() {
				if status, err := get(b.Client, s.URL+"/ok"); err != nil || status != http.StatusOK {
					errs <- fmt.Errorf("GET: %d, %v", status, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// One connection per request of the widest burst, plus some that
	// net/http drops on a loaded machine (it does not reuse a connection
	// whose request write took over 50 ms to report); net/http's default
	// of 2 idle per host closes most after each burst instead (about
	// 1+16+5*14 = 87 here).
	if got := conns.Load(); got > 3*width {
		t.Errorf("%d calls opened %d connections over HTTP/1.1, want at most %d", sequential+bursts*width, got, 3*width)
	}
}
