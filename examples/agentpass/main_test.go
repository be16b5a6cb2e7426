package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// env is the sandbox as the devnet serves it (explicit ports, A records),
// reached by the CLI only through -ca and -dns, like an outside tool.
type env struct {
	t      *testing.T
	sb     *sandbox.Sandbox
	global []string
	// onStderr, when set, sees the CLI's whole stderr after each write.
	onStderr func(string)
	// cache is the user's cache directory the CLI sees (XDG_CACHE_HOME),
	// where token saves pending requests by default.
	cache string
}

func newEnv(t *testing.T, onPending func(*authority.Authority, authority.Request)) *env {
	t.Helper()
	n := testnet.New(t)
	sb, err := sandbox.Build(n, sandbox.Options{
		ExplicitPorts: true, ApprovalPages: true, AuthorityChoice: service.OfferServiceAndFederated,
		PollAfter: 100 * time.Millisecond, OnPending: onPending,
	})
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, n.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, sb: sb, global: []string{"-ca", ca, "-dns", n.DNS.Addr()}, cache: t.TempDir()}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	onWrite func(string) // sees the whole buffer after each write
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	n, err := s.b.Write(p)
	all := s.b.String()
	s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite(all)
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run runs the CLI with the global flags and returns the exit code, stdout
// and stderr.
func (e *env) run(envVars map[string]string, args ...string) (int, string, string) {
	e.t.Helper()
	return e.runContext(context.Background(), envVars, args...)
}

// runContext is run under ctx, which may end the CLI like a Ctrl-C.
func (e *env) runContext(ctx context.Context, envVars map[string]string, args ...string) (int, string, string) {
	e.t.Helper()
	var stdout syncBuffer
	stderr := syncBuffer{onWrite: e.onStderr}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	getenv := func(k string) string {
		if k == "XDG_CACHE_HOME" && envVars[k] == "" {
			return e.cache
		}
		return envVars[k]
	}
	code := runContext(ctx, append(append([]string{}, e.global...), args...), &stdout, &stderr, getenv)
	return code, stdout.String(), stderr.String()
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return v
}

// TestDiscover: the Service's configuration and each user's resolution
// branch, as the JSON output reports them; a refused resolution exits 1.
func TestDiscover(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		user, branch, code string
		exit, authorities  int
	}{
		{sandbox.UserEnterprise, "enterprise", "", 0, 1},
		{sandbox.UserStrict, "enterprise", "", 0, 1},
		{sandbox.UserNoRecord, "service_or_federated", "", 0, 2},
		{sandbox.UserNone, "", "delegation_disabled", 1, 0},
		{sandbox.UserBroken, "", "discovery_failed", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			code, out, stderr := e.run(nil, "-json", "discover", e.sb.TodoOrigin, tt.user)
			if code != tt.exit {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.exit, stderr)
			}
			got := decode[discoverOutput](t, out)
			if got.Service.Origin != e.sb.TodoOrigin || got.Service.ConfigurationURL != e.sb.Service.ConfigurationURL() {
				t.Errorf("service %+v", got.Service)
			}
			r := got.Resolution
			if r.Branch != tt.branch || len(r.Authorities) != tt.authorities {
				t.Errorf("branch %q with %d authorities, want %q with %d", r.Branch, len(r.Authorities), tt.branch, tt.authorities)
			}
			if c, _ := r.Error["code"].(string); c != tt.code {
				t.Errorf("error code %q, want %q", c, tt.code)
			}
			for _, a := range r.Authorities {
				if a.TrustMode == "" {
					t.Errorf("authority %s without trust mode: %s", a.Authority, a.Error)
				}
			}
		})
	}
	// Human output, without an email.
	code, out, _ := e.run(nil, "discover", e.sb.TodoOrigin)
	if code != 0 || !strings.Contains(out, "resolve_authorities") || !strings.Contains(out, e.sb.Federated.Identifier()) {
		t.Errorf("discover (text) = %d:\n%s", code, out)
	}
}

// TestTokenAndCall: a read-only task is approved by policy; the token
// carries todos:read and works with call; a call outside the scope fails
// with exit 1 and the Service's 403.
func TestTokenAndCall(t *testing.T) {
	e := newEnv(t, nil)
	code, out, stderr := e.run(nil, "token", e.sb.TodoOrigin, sandbox.UserEnterprise, "-json", "-task", "Summarise my to-do list")
	if code != 0 {
		t.Fatalf("token: exit %d\n%s", code, stderr)
	}
	tok := decode[tokenOutput](t, out)
	if tok.Token == "" || tok.TokenType != "Bearer" || tok.Branch != "enterprise" || tok.Authority != e.sb.Enterprise.Identifier() || tok.ExpiresAt == nil {
		t.Errorf("token output %+v", tok)
	}
	if diff := cmp.Diff(pass.Scope{"todos:read"}, tok.Scope); diff != "" {
		t.Errorf("scope (-want +got):\n%s", diff)
	}

	vars := map[string]string{"AGENTPASS_TOKEN": tok.Token}
	code, out, _ = e.run(vars, "call", "-json", e.sb.TodoOrigin+"/api/todos")
	res := decode[callOutput](t, out)
	if code != 0 || res.Status != 200 || !strings.Contains(out, "Renew the passport") {
		t.Errorf("call GET: exit %d %s", code, out)
	}
	code, out, _ = e.run(nil, "call", "-json", "-token", tok.Token, "-X", "DELETE", e.sb.TodoOrigin+"/api/todos/1")
	res = decode[callOutput](t, out)
	if code != 1 || res.Status != 403 || !strings.Contains(res.Headers["Www-Authenticate"], "insufficient_scope") {
		t.Errorf("call DELETE: exit %d %s", code, out)
	}
	code, out, stderr = e.run(nil, "call", e.sb.TodoOrigin+"/api/todos", "-d", `{"title":"x"}`, "-token", tok.Token)
	if code != 1 || !strings.Contains(stderr, "403") || !strings.Contains(out, "todos:write") {
		t.Errorf("call POST (text): exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	if code, _, _ = e.run(nil, "call", e.sb.TodoOrigin+"/api/todos"); code != 2 {
		t.Errorf("call without a token: exit %d, want 2", code)
	}
	if code, out, _ = e.run(vars, "call", "-json", "-token", "apt_not-a-token", e.sb.TodoOrigin+"/api/todos"); code != 1 || decode[callOutput](t, out).Status != 401 {
		t.Errorf("call with a bad token: exit %d %s", code, out)
	}
}

// TestTokenWaitsForApproval: a task that changes data waits for a person;
// the CLI shows the approval page's link, and prints exactly the scope the
// person granted narrowed by -scope.
func TestTokenWaitsForApproval(t *testing.T) {
	// The person decides once the CLI shows that it waits.
	decide := make(chan func(), 1)
	e := newEnv(t, func(a *authority.Authority, r authority.Request) {
		decide <- func() {
			_, _ = a.Decide(context.Background(), r.MissionID, authority.Decision{Outcome: authority.Approve, Scope: pass.Scope{"todos:read", "todos:write"}, DecidedBy: "human:test"})
		}
	})
	var once sync.Once
	e.onStderr = func(s string) {
		if strings.Contains(s, "waiting for approval") {
			once.Do(func() { go (<-decide)() })
		}
	}
	code, out, stderr := e.run(nil, "-json", "-harness-id", "ci-bot", "token", e.sb.TodoOrigin, sandbox.UserEnterprise, "-task", "Add milk to my list", "-scope", "todos:write,todos:delete")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	page := e.sb.ApprovalPage(e.sb.Enterprise).URL() + "requests/"
	if !strings.Contains(stderr, "waiting for approval: "+page) {
		t.Errorf("stderr does not show the approval page %s:\n%s", page, stderr)
	}
	if diff := cmp.Diff(pass.Scope{"todos:write"}, decode[tokenOutput](t, out).Scope); diff != "" {
		t.Errorf("scope (-want +got):\n%s", diff)
	}
	auths, _ := e.sb.Enterprise.Authorizations(context.Background(), authority.ListOptions{})
	if len(auths) != 1 || auths[0].HarnessID != "ci-bot" {
		t.Errorf("authorizations %v, want one for harness ci-bot", auths)
	}
}

// TestTokenChoice: a user without an Enterprise Authority is offered the
// Service Authority and the Federated one; without -authority the CLI lists
// them and fails, with -authority it uses the one chosen.
func TestTokenChoice(t *testing.T) {
	e := newEnv(t, nil)
	code, out, _ := e.run(nil, "-json", "token", e.sb.TodoOrigin, sandbox.UserNoRecord)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	got := decode[map[string]map[string]any](t, out)["error"]
	if got["code"] != "choice_required" || len(got["options"].([]any)) != 2 {
		t.Errorf("error %v", got)
	}
	code, out, stderr := e.run(nil, "-json", "token", e.sb.TodoOrigin, sandbox.UserNoRecord, "-authority", e.sb.Federated.Identifier())
	if code != 0 {
		t.Fatalf("with -authority: exit %d\n%s", code, stderr)
	}
	if tok := decode[tokenOutput](t, out); tok.Authority != e.sb.Federated.Identifier() || tok.Branch != "federated" {
		t.Errorf("token %+v", tok)
	}
	code, _, stderr = e.run(nil, "token", e.sb.TodoOrigin, sandbox.UserNoRecord)
	if code != 1 || !strings.Contains(stderr, "-authority") || !strings.Contains(stderr, e.sb.ServiceAuthority.Identifier()) {
		t.Errorf("text: exit %d, stderr %s", code, stderr)
	}
}

// TestTokenInterruptedThenWait: token saves the pending request (0600, its
// key in a 0700 directory next to it) and prints the approval page; a
// Ctrl-C while a person decides leaves the request open, another token
// refuses to overwrite it, and `wait <file>` in a new run gets the token
// once the person approves, with the scope token asked for. The Authority
// sees exactly one request (#15 item 6).
func TestTokenInterruptedThenWait(t *testing.T) {
	decide := make(chan func(), 1)
	e := newEnv(t, func(a *authority.Authority, r authority.Request) {
		decide <- func() {
			if _, err := a.Decide(context.Background(), r.MissionID, authority.Decision{Outcome: authority.Approve, Scope: pass.Scope{"todos:read", "todos:write"}, DecidedBy: "human:test"}); err != nil {
				t.Errorf("Decide: %v", err)
			}
		}
	})
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	e.onStderr = func(s string) {
		if strings.Contains(s, "· saved to ") {
			interrupt() // Ctrl-C once the request is saved
		}
	}
	code, _, stderr := e.runContext(ctx, nil, "token", e.sb.TodoOrigin, sandbox.UserEnterprise, "-task", "Add eggs to my list", "-scope", "todos:write")
	e.onStderr = nil
	path := filepath.Join(e.cache, "agentpass", "pending.json")
	if code != 1 || !strings.Contains(stderr, "agentpass wait "+path) || !strings.Contains(stderr, "waiting for approval: "+e.sb.ApprovalPage(e.sb.Enterprise).URL()) {
		t.Fatalf("interrupted token: exit %d, want 1 with the approval page and a resume hint:\n%s", code, stderr)
	}
	for _, c := range []struct {
		path string
		perm os.FileMode
	}{{path, 0o600}, {filepath.Join(e.cache, "agentpass", "agentpass-keys"), 0o700 | os.ModeDir}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != c.perm {
			t.Errorf("%s: mode %v, want %v", c.path, got, c.perm)
		}
	}
	keys, _ := filepath.Glob(filepath.Join(e.cache, "agentpass", "agentpass-keys", "*"))
	if len(keys) != 1 {
		t.Errorf("key files %v, want one", keys)
	}
	if code, _, stderr := e.run(nil, "token", e.sb.TodoOrigin, sandbox.UserEnterprise); code != 1 || !strings.Contains(stderr, "already saved") {
		t.Errorf("second token over a saved request: exit %d\n%s", code, stderr)
	}

	(<-decide)() // the person approves while no process waits
	code, out, stderr := e.run(nil, "-json", "wait", path)
	if code != 0 {
		t.Fatalf("wait: exit %d\n%s", code, stderr)
	}
	tok := decode[tokenOutput](t, out)
	if tok.Token == "" || tok.Authority != e.sb.Enterprise.Identifier() || tok.User != sandbox.UserEnterprise {
		t.Errorf("wait output %+v", tok)
	}
	if diff := cmp.Diff(pass.Scope{"todos:write"}, tok.Scope); diff != "" {
		t.Errorf("scope (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pending file after wait: %v, want it removed", err)
	}
	if keys, _ := filepath.Glob(filepath.Join(e.cache, "agentpass", "agentpass-keys", "*")); len(keys) != 0 {
		t.Errorf("key files after wait: %v, want none", keys)
	}
	auths, _ := e.sb.Enterprise.Authorizations(context.Background(), authority.ListOptions{})
	pending, _ := e.sb.Enterprise.Pending(context.Background(), authority.ListOptions{})
	if len(auths) != 1 || auths[0].HarnessID != "agentpass-cli" || len(pending) != 0 {
		t.Errorf("%d authorizations (harness %v), %d pending; want one by agentpass-cli, none pending", len(auths), auths, len(pending))
	}
	if code, _, _ := e.run(nil, "wait", path); code != 1 {
		t.Errorf("wait on a removed file: exit %d, want 1", code)
	}
}

// TestVersion: -version prints the module version ("(devel)" in a test).
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "agentpass github.com/agentpass-go/agentpass ") {
		t.Errorf("-version: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

func TestUsage(t *testing.T) {
	e := newEnv(t, nil)
	for _, args := range [][]string{{}, {"frobnicate"}, {"token", e.sb.TodoOrigin}, {"discover"}, {"-nope"}, {"call", "http://todo.test/x", "-token", "t"}} {
		if code, _, _ := e.run(nil, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if code := run([]string{"help"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Errorf("help: exit %d", code)
	}
}

// TestBrowser: a browser session opened in headless Chromium lands on the
// to-do page signed in. Skipped only when Chromium is not installed.
func TestBrowser(t *testing.T) {
	exe := testnet.Chromium(t)
	e := newEnv(t, nil)
	code, out, stderr := e.run(nil, "-json", "browser", e.sb.TodoOrigin, sandbox.UserEnterprise, "-headless", "-chromium", exe, "-task", "Show my to-do list", "-dest", e.sb.TodoOrigin+"/app")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	got := decode[browserOutput](t, out)
	if got.URL != e.sb.TodoOrigin+"/app" || got.Status != 200 || !strings.Contains(got.Title, sandbox.UserEnterprise) {
		t.Errorf("browser output %+v", got)
	}
}

// TestDevnetManifest: -devnet reads the CA file and the DNS server from a
// devnet manifest (through devnetclient), and a manifest naming neither
// is refused.
func TestDevnetManifest(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	manifest := filepath.Join(dir, "manifest.json")
	raw, _ := json.Marshal(map[string]string{"ca_file": e.global[1], "dns": e.global[3]})
	if err := os.WriteFile(manifest, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	e.global = []string{"-devnet", manifest}
	code, out, stderr := e.run(nil, "-json", "discover", e.sb.TodoOrigin)
	if code != 0 || decode[discoverOutput](t, out).Service.Origin != e.sb.TodoOrigin {
		t.Fatalf("discover with -devnet: exit %d, %s %s", code, out, stderr)
	}
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	e.global = []string{"-devnet", empty}
	if code, _, stderr := e.run(nil, "discover", e.sb.TodoOrigin); code != 1 || !strings.Contains(stderr, "not a devnet manifest") {
		t.Errorf("discover with an empty manifest: exit %d, %s", code, stderr)
	}
}
