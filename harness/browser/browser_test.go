package browser_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/browser"
	"github.com/agentpass-go/agentpass/internal/testnet"
)

// needChromium skips the test only when Chromium is not installed (CI
// installs the Debian chromium package and sets AGENTPASS_TEST_CHROMIUM).
func needChromium(t *testing.T) { testnet.Chromium(t) }

// browserOptions returns options that reach the network's hosts by name and
// accept exactly their certificates.
func browserOptions(t *testing.T, n *testnet.Network, hosts ...string) browser.Options {
	t.Helper()
	opts := browser.Options{ExecPath: testnet.Chromium(t), Hosts: map[string]string{}, Timeout: 20 * time.Second}
	for _, h := range hosts {
		addr := n.Addr(h)
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: h, RootCAs: n.CertPool()})
		if err != nil {
			t.Fatalf("dial %s: %v", h, err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		opts.Hosts[h] = addr
		opts.InsecureTrustedSPKI = append(opts.InsecureTrustedSPKI, browser.SPKIHash(leaf))
	}
	return opts
}

// fakeApp is a Service's browser side: a one-time initialization endpoint
// and a page that shows who is logged in.
type fakeApp struct {
	mu     sync.Mutex
	tokens map[string]bool // token -> used
	inits  []string        // method + query of every initialization request
	seen   []string        // every request, "METHOD path"
}

func (a *fakeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.seen = append(a.seen, r.Method+" "+r.URL.Path)
	a.mu.Unlock()
	switch r.URL.Path {
	case "/init":
		tok := r.URL.Query().Get("token")
		if r.Method == http.MethodPost {
			tok = r.PostFormValue("initialization_token")
		}
		a.mu.Lock()
		a.inits = append(a.inits, r.Method)
		used, known := a.tokens[tok]
		a.tokens[tok] = true
		a.mu.Unlock()
		w.Header().Set("Cache-Control", "no-store")
		if !known {
			http.Error(w, "unknown initialization", http.StatusNotFound)
			return
		}
		if used {
			http.Error(w, "initialization already used", http.StatusGone)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "__Host-session", Value: "alex", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, "/tickets", http.StatusSeeOther)
	case "/tickets":
		c, err := r.Cookie("__Host-session")
		if err != nil {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "<html><body><h1 id=user>Logged in as %s</h1></body></html>", html.EscapeString(c.Value))
	default:
		http.NotFound(w, r)
	}
}

func newFakeApp(t *testing.T, tokens ...string) (*testnet.Network, *fakeApp) {
	n := testnet.New(t)
	a := &fakeApp{tokens: map[string]bool{}}
	for _, tok := range tokens {
		a.tokens[tok] = false
	}
	n.Serve("app.test", a)
	return n, a
}

// H-RED-7: the initialization is loaded once, directly, and the agent lands
// logged in on the destination; a second load of the same request fails.
func TestLoadOnce(t *testing.T) {
	needChromium(t)
	const secret = `tok-<script>alert(1)</script>&"'`
	tests := []struct {
		name string
		req  harness.InitRequest
	}{
		{"form POST", harness.InitRequest{Method: "POST", URL: "https://app.test/init", FormFields: map[string]string{"initialization_token": secret}}},
		{"GET", harness.InitRequest{Method: "GET", URL: "https://app.test/init?token=" + strings.ReplaceAll(secret, "&", "%26")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, app := newFakeApp(t, secret)
			ctx := context.Background()
			opts := browserOptions(t, n, "app.test")
			s, err := browser.Launch(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Load(ctx, tt.req); err != nil {
				t.Fatalf("Load: %v", err)
			}
			if s.URL() != "https://app.test/tickets" || s.Status() != 200 {
				t.Errorf("ended on %s (%d), want https://app.test/tickets (200)", s.URL(), s.Status())
			}
			text, err := chromedp.Run(s.Context(), chromedp.Text("#user"))
			if err != nil || text != "Logged in as alex" {
				t.Errorf("page text = %q, %v", text, err)
			}
			if err := s.Load(ctx, tt.req); !errors.Is(err, browser.ErrInvalidInitialization) {
				t.Errorf("second Load in the same session: %v", err)
			}

			// The same initialization in another browser: refused, no session.
			s2, err := browser.Launch(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			err = s2.Load(ctx, tt.req)
			var ie *browser.InitializationError
			if !errors.As(err, &ie) || ie.Status != http.StatusGone {
				t.Fatalf("replayed initialization: %v, want status 410", err)
			}
			if strings.Contains(err.Error(), "tok-") {
				t.Error("the error shows the secret")
			}
			app.mu.Lock()
			defer app.mu.Unlock()
			if len(app.inits) != 2 || app.inits[0] != tt.req.Method {
				t.Errorf("initialization requests = %v, want one per load (no prefetch or retry)", app.inits)
			}
		})
	}
}

func TestOpenRefusesUnsafeRequests(t *testing.T) {
	for _, req := range []harness.InitRequest{
		{Method: "GET", URL: "http://app.test/init?token=x"},
		{Method: "PUT", URL: "https://app.test/init"},
		{Method: "POST", URL: "https://app.test/init"},
	} {
		s := &browser.Session{}
		if err := s.Load(context.Background(), req); !errors.Is(err, browser.ErrInvalidInitialization) {
			t.Errorf("%v: err = %v, want ErrInvalidInitialization", req, err)
		}
	}
	if _, err := browser.Launch(context.Background(), browser.Options{InsecureTrustedSPKI: []string{"nope"}}); err == nil {
		t.Error("Launch accepted an invalid SPKI hash")
	}
	if _, err := browser.Launch(context.Background(), browser.Options{Hosts: map[string]string{"a.test": "127.0.0.1"}}); err == nil {
		t.Error("Launch accepted an address without port")
	}
}

// Without the SPKI pin the test network's certificates are refused.
func TestUntrustedCertificate(t *testing.T) {
	needChromium(t)
	n, app := newFakeApp(t, "t1")
	opts := browserOptions(t, n, "app.test")
	opts.InsecureTrustedSPKI = nil
	s, err := browser.Launch(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Load(context.Background(), harness.InitRequest{Method: "GET", URL: "https://app.test/init?token=t1"})
	if !errors.Is(err, browser.ErrInitializationFailed) {
		t.Fatalf("err = %v, want ErrInitializationFailed", err)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if len(app.inits) != 0 {
		t.Errorf("the app received %v over an untrusted certificate", app.inits)
	}
}
