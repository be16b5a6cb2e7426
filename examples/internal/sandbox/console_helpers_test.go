package sandbox_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
)

const adminToken = "test-admin-token-0123456789"

// env is a sandbox with approval pages and a Harness.
type env struct {
	t     *testing.T
	n     *testnet.Network
	sb    *sandbox.Sandbox
	agent *harness.Client

	clock *offsetClock

	mu       sync.Mutex
	progress []harness.Progress
	changed  chan struct{} // closed and replaced when progress grows
}

// offsetClock is the real time plus an offset a test can advance, so a
// test can jump past an interval (the Service's re-check) without waiting.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// newEnvWith is newEnv with the sandbox options adjusted by mutate.
func newEnvWith(t *testing.T, explicitPorts bool, mutate func(*sandbox.Options)) *env {
	return newEnv(t, explicitPorts, mutate)
}

func newEnv(t *testing.T, explicitPorts bool, mods ...func(*sandbox.Options)) *env {
	t.Helper()
	n := testnet.New(t)
	clock := &offsetClock{}
	opts := sandbox.Options{
		ApprovalPages: true, AdminToken: adminToken, ExplicitPorts: explicitPorts,
		PollAfter: 100 * time.Millisecond, CheckInterval: 100 * time.Millisecond, Now: clock.Now,
	}
	for _, m := range mods {
		if m != nil {
			m(&opts)
		}
	}
	sb, err := sandbox.Build(n, opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, n: n, sb: sb, clock: clock, changed: make(chan struct{})}
	e.agent, err = harness.New(harness.Config{
		HarnessID: "test-agent", HTTPClient: n.Client(), Discovery: n.Discovery(), MinPoll: 100 * time.Millisecond,
		InsecureAllowPrivateNetworks: true, // the sandbox lives on loopback
		Progress: func(p harness.Progress) {
			e.mu.Lock()
			e.progress = append(e.progress, p)
			close(e.changed)
			e.changed = make(chan struct{})
			e.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// acquired is the outcome of an Acquire running in the background.
type acquired struct {
	grant *harness.Grant
	err   error
}

// pending starts an Acquire that the sandbox policy leaves to a person
// (the task adds an item) and waits until the Enterprise Authority lists it.
func (e *env) pending(task string) (*authority.Request, <-chan acquired) {
	e.t.Helper()
	return e.pendingWith(task, nil, nil)
}

// pendingStaged is pending for a request with a stage plan.
func (e *env) pendingStaged(task string, stages []pass.Stage) (*authority.Request, <-chan acquired) {
	return e.pendingWith(task, stages, nil)
}

// pendingScope is pending for a request asking for scope.
func (e *env) pendingScope(task string, scope pass.Scope) (*authority.Request, <-chan acquired) {
	return e.pendingWith(task, nil, scope)
}

// pendingWith is pending for a request with a stage plan and scope.
func (e *env) pendingWith(task string, stages []pass.Stage, scope pass.Scope) (*authority.Request, <-chan acquired) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	e.t.Cleanup(cancel)
	done := make(chan acquired, 1)
	go func() {
		g, err := e.agent.Acquire(ctx, harness.Request{Service: e.sb.TodoOrigin, User: sandbox.UserEnterprise, Task: pass.Task{Description: task},
			Stages: stages, Scope: scope})
		done <- acquired{g, err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		list, err := e.sb.Enterprise.Pending(ctx, authority.ListOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, r := range list {
			if r.TaskDescription == task {
				return r, done
			}
		}
		select {
		case a := <-done:
			e.t.Fatalf("Acquire ended before the request was pending: %v", a.err)
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
	case <-time.After(30 * time.Second):
		e.t.Fatal("Acquire did not finish")
	}
	return acquired{}
}

// approvalURL returns the approval link the Harness reported for the
// request. The Authority stores a request before its 202 reaches the
// Harness, so the Progress event may trail what pending saw: wait for it.
func (e *env) approvalURL(missionID string) string {
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		e.mu.Lock()
		for _, p := range e.progress {
			if p.Event == harness.EventRequestCreated && strings.HasSuffix(p.ApprovalURL, "/"+missionID) {
				e.mu.Unlock()
				return p.ApprovalURL
			}
		}
		changed := e.changed
		e.mu.Unlock()
		select {
		case <-changed:
		case <-timeout.C:
			return ""
		}
	}
}

// browser is a cookie-keeping HTTP client that does not follow redirects.
type webClient struct {
	t      *testing.T
	client *http.Client
}

func (e *env) web() *webClient {
	jar, _ := cookiejar.New(nil)
	return &webClient{t: e.t, client: &http.Client{
		Transport: e.n.Client().Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// in returns the client failing t (a subtest) instead of the env's test;
// it shares the cookies.
func (b *webClient) in(t *testing.T) *webClient { return &webClient{t: t, client: b.client} }

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get loads a page and returns its status, body and form token.
func (b *webClient) get(u string) (int, string, string) {
	b.t.Helper()
	resp, err := b.client.Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	tok := ""
	if m := csrfRE.FindStringSubmatch(string(body)); m != nil {
		tok = m[1]
	}
	return resp.StatusCode, string(body), tok
}

// post submits a form as a same-origin browser would (Origin and
// Sec-Fetch-Site headers), unless headers override them.
func (b *webClient) post(u string, form url.Values, headers map[string]string) *http.Response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	pu, _ := url.Parse(u)
	req.Header.Set("Origin", pu.Scheme+"://"+pu.Host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// api calls the admin API.
func (e *env) api(method, u, token, body string) (int, string) {
	e.t.Helper()
	return e.apiIn(e.t, method, u, token, body)
}

// apiIn is api failing t (a subtest) instead of the env's test.
func (e *env) apiIn(t testing.TB, method, u, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.n.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) page() string { return e.sb.ApprovalPage(e.sb.Enterprise).URL() }
