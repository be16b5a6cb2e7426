package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/console"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// Hosts of the console tests: the console and the OpenID provider, each on
// its own loopback port so that a real browser reaches them too.
const (
	consoleHost = "console.test"
	opHost      = "op.test"
	apiToken    = "console-api-token-0123456789"
)

// env is a kit network (an Authority that leaves every request to a
// person, a Service with a destructive scope, a Harness), a real OpenID
// provider, and the console signing people in through it.
type env struct {
	t    *testing.T
	k    *deploy.Kit
	op   *testOP
	c    *console.Console
	base string // the console's BaseURL
}

func newEnv(t *testing.T) *env {
	t.Helper()
	k := deploy.StartKit(t, deploy.KitOptions{Manual: true, Scopes: []pass.ScopeInfo{
		{Name: "notes:read", Description: "Read your notes"},
		{Name: "notes:write", Description: "Add and change notes"},
		{Name: "notes:delete", Description: "Delete notes"},
	}})
	e := &env{t: t, k: k, op: newTestOP(t, k.Clock.Now)}
	var err error
	if e.op.issuer, err = k.Net.ServePort(opHost, "127.0.0.1:0", e.op); err != nil {
		t.Fatal(err)
	}
	origin, err := k.Net.ServePort(consoleHost, "127.0.0.1:0", http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	e.base = origin + "/approvals"
	e.op.redirect = e.base + "/auth/callback"
	e.op.users["boss"] = opUser{Sub: "u-1", Email: "Boss@corp.test", Name: "Boss Person", Verified: true}
	e.op.users["outsider"] = opUser{Sub: "u-2", Email: "eve@other.test", Name: "Eve", Verified: true}
	e.op.users["unverified"] = opUser{Sub: "u-3", Email: "mallory@corp.test", Name: "Mallory", Verified: false}
	login, err := console.NewOIDC(context.Background(), console.OIDCConfig{
		Issuer: e.op.issuer, ClientID: e.op.clientID, ClientSecret: e.op.secret, BaseURL: e.base,
		CookieKey: []byte(strings.Repeat("k", 32)), HTTPClient: k.Net.Client(), InsecureAllowPrivateNetworks: true,
		Now: k.Clock.Now, SessionTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	api, err := console.NewTokenAuthenticator(console.Token{Secret: apiToken, Subject: "api:ops", Domains: []string{"corp.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if e.c, err = console.New(console.Config{Authority: k.Authority, BaseURL: e.base, Authenticator: login,
		APIAuthenticator: api, Now: k.Clock.Now}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Net.ServePort(consoleHost, "127.0.0.1:0", e.c); err != nil {
		t.Fatal(err)
	}
	return e
}

// acquired is the outcome of an Acquire running in the background.
type acquired struct {
	grant *harness.Grant
	err   error
}

// pending starts an Acquire for the kit's user and returns the request
// once the Authority lists it.
func (e *env) pending(task string) (*authority.Request, <-chan acquired) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	e.t.Cleanup(cancel)
	done := make(chan acquired, 1)
	go func() {
		g, err := e.k.Harness.Acquire(ctx, harness.Request{Service: e.k.ServiceURL, User: e.k.User, Task: pass.Task{Description: task}})
		done <- acquired{g, err}
	}()
	for ctx.Err() == nil {
		list, err := e.k.Authority.Pending(ctx, authority.ListOptions{Now: e.k.Clock.Now()})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, r := range list {
			if r.TaskDescription == task {
				return r, done
			}
		}
		select { // the request is stored before Acquire's first poll: wait on a short tick, bounded by ctx
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	e.t.Fatal("the request never became pending")
	return nil, nil
}

func (e *env) wait(done <-chan acquired) acquired {
	e.t.Helper()
	select {
	case a := <-done:
		return a
	case <-time.After(60 * time.Second):
		e.t.Fatal("Acquire did not return")
		return acquired{}
	}
}

// person is a browser without JavaScript: a cookie jar on the network's
// client, following redirects.
type person struct {
	t      *testing.T
	client *http.Client
}

func (e *env) person() *person {
	jar, _ := cookiejar.New(nil)
	base := e.k.Net.Client()
	return &person{t: e.t, client: &http.Client{Transport: base.Transport, Jar: jar, Timeout: 30 * time.Second}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (p *person) get(u string) (int, string, string) {
	p.t.Helper()
	resp, err := p.client.Get(u)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	tok := ""
	if m := csrfRE.FindStringSubmatch(string(b)); m != nil {
		tok = m[1]
	}
	return resp.StatusCode, string(b), tok
}

// post sends a form as a same-origin browser would.
func (p *person) post(u, origin string, form url.Values) (int, string) {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// signIn goes through the provider's login form as user and returns the
// console page it lands on.
func (e *env) signIn(p *person, user, next string) (int, string) {
	e.t.Helper()
	status, body, _ := p.get(next)
	if status != http.StatusOK || !strings.Contains(body, "Sign in to the test provider") {
		e.t.Fatalf("GET %s = %d, want the provider's login form:\n%s", next, status, body)
	}
	form := url.Values{"user": {user}}
	for _, m := range regexp.MustCompile(`name="([a-z_]+)" value="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	return p.post(e.op.issuer+"/authorize", e.op.issuer, form)
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }

func ioCopy(w io.Writer, resp *http.Response) (int64, error) {
	return io.Copy(w, io.LimitReader(resp.Body, 1<<20))
}

func authorityListNow(e *env) authority.ListOptions {
	return authority.ListOptions{Now: e.k.Clock.Now()}
}

func authorityApprove(scope ...string) authority.Decision {
	return authority.Decision{Outcome: authority.Approve, Scope: scope, DecidedBy: "human:test"}
}

func harnessRedeem() harness.RedeemOptions { return harness.RedeemOptions{} }
