package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority/console"
)

// cookieRecorder keeps the Set-Cookie headers a browser received.
type cookieRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	set  []string
}

func (c *cookieRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil {
		c.mu.Lock()
		c.set = append(c.set, resp.Header.Values("Set-Cookie")...)
		c.mu.Unlock()
	}
	return resp, err
}

// TestOIDCSignIn: a person without a session is sent to the provider,
// signs in with the authorization code flow and PKCE, and lands on the
// page they asked for; the session cookie is Secure, HttpOnly, SameSite
// and expires (G-27).
func TestOIDCSignIn(t *testing.T) {
	e := newEnv(t)
	p := e.person()
	rec := &cookieRecorder{next: p.client.Transport}
	p.client.Transport = rec
	status, body := e.signIn(p, "boss", e.base+"/history?q=x")
	if status != http.StatusOK || !strings.Contains(body, "Signed in as <strong>Boss Person</strong>") || !strings.Contains(body, `id="history"`) {
		t.Fatalf("after signing in: %d\n%s", status, body)
	}
	if e.op.lastPKCE == "" || e.op.tokens != 1 {
		t.Errorf("token request: verifier %q, %d ID tokens", e.op.lastPKCE, e.op.tokens)
	}
	var session string
	for _, c := range rec.set {
		if strings.HasPrefix(c, "__Host-agentpass-session-") && !strings.Contains(c, "Max-Age=0") {
			session = c
		}
	}
	for _, attr := range []string{"Path=/", "Max-Age=3600", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(session, attr) {
			t.Errorf("session cookie %q lacks %s", session, attr)
		}
	}
	// The session ends after SessionTTL: the person is sent to sign in.
	e.k.Clock.Advance(time.Hour + time.Second)
	p.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := p.client.Get(e.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/approvals/auth/login?next=") {
		t.Errorf("expired session: %d to %q, want the login", resp.StatusCode, loc)
	}
}

// TestOIDCRefusals: what a sign-in must refuse.
func TestOIDCRefusals(t *testing.T) {
	e := newEnv(t)
	t.Run("nonce mismatch", func(t *testing.T) {
		e.op.badNonce = true
		status, body := e.signIn(e.person(), "boss", e.base+"/")
		if status != http.StatusUnauthorized || !strings.Contains(body, "nonce mismatch") {
			t.Errorf("= %d %s", status, body)
		}
	})
	t.Run("provider refuses", func(t *testing.T) {
		status, body := e.signIn(e.person(), "nobody", e.base+"/")
		if status != http.StatusUnauthorized || !strings.Contains(body, "the provider refused") {
			t.Errorf("= %d %s", status, body)
		}
	})
	t.Run("callback without a sign-in in progress", func(t *testing.T) {
		status, _, _ := e.person().get(e.base + "/auth/callback?code=x&state=y")
		if status != http.StatusUnauthorized {
			t.Errorf("= %d", status)
		}
	})
	t.Run("state mismatch", func(t *testing.T) {
		p := e.person()
		p.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := p.client.Get(e.base + "/auth/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		status, _, _ := p.get(e.base + "/auth/callback?code=x&state=forged")
		if status != http.StatusUnauthorized {
			t.Errorf("= %d", status)
		}
	})
	t.Run("no open redirect", func(t *testing.T) {
		for _, next := range []string{"https://evil.test/", "//evil.test/approvals/", "/elsewhere", "/approvals/auth/logout"} {
			p := e.person()
			p.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			status, _, _ := p.get(e.base + "/auth/login?" + url.Values{"next": {next}}.Encode())
			if status != http.StatusSeeOther {
				t.Fatalf("login = %d", status)
			}
			p.client.CheckRedirect = nil
			_, body := e.signIn(p, "boss", e.base+"/auth/login?"+url.Values{"next": {next}}.Encode())
			if !strings.Contains(body, `<h1>Waiting for you`) {
				t.Errorf("next=%q did not land on the console's home", next)
			}
		}
	})
	t.Run("forged session cookie", func(t *testing.T) {
		p := e.person()
		e.signIn(p, "boss", e.base+"/")
		u, _ := url.Parse(e.base + "/")
		for _, c := range p.client.Jar.Cookies(u) {
			if strings.HasPrefix(c.Name, "__Host-agentpass-session-") {
				c.Value = strings.Replace(c.Value, ".", "x.", 1)
				p.client.Jar.SetCookies(u, []*http.Cookie{c})
			}
		}
		status, body, _ := p.get(e.base + "/")
		if status != http.StatusOK || !strings.Contains(body, "Sign in to the test provider") {
			t.Errorf("forged cookie: %d, want the provider's login", status)
		}
	})
	t.Run("form without a session", func(t *testing.T) {
		status, _ := e.person().post(e.base+"/decide", strings.Split(e.base, "/approvals")[0], url.Values{"id": {"msn_x"}})
		if status != http.StatusUnauthorized {
			t.Errorf("= %d", status)
		}
	})
}

func TestNewOIDCRefusesBadConfig(t *testing.T) {
	good := console.OIDCConfig{Issuer: "https://op.test", ClientID: "c", BaseURL: "https://c.test/a", CookieKey: make([]byte, 32)}
	for name, mutate := range map[string]func(*console.OIDCConfig){
		"no issuer":    func(c *console.OIDCConfig) { c.Issuer = "" },
		"http issuer":  func(c *console.OIDCConfig) { c.Issuer = "http://op.test" },
		"no client":    func(c *console.OIDCConfig) { c.ClientID = "" },
		"http base":    func(c *console.OIDCConfig) { c.BaseURL = "http://c.test/a" },
		"short key":    func(c *console.OIDCConfig) { c.CookieKey = make([]byte, 31) },
		"long session": func(c *console.OIDCConfig) { c.SessionTTL = 8 * 24 * time.Hour },
		"negative ttl": func(c *console.OIDCConfig) { c.SessionTTL = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			mutate(&cfg)
			if _, err := console.NewOIDC(context.Background(), cfg); err == nil || !strings.HasPrefix(err.Error(), "console: ") {
				t.Errorf("NewOIDC = %v, want a console: error", err)
			}
		})
	}
}
