package harness

// Programmable peers for the unit tests: a fake Service and fake Authorities
// served over real TLS on a testnet (loopback DNS, CA-signed certificates),
// answering with crafted, possibly hostile, documents.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

const (
	svcOrigin  = "https://todo.test"
	svcConfig  = "https://todo.test/.well-known/agentpass-service"
	userEmail  = "alex@corp.test"
	harnessID  = "test-harness"
	passValue  = "ap_secret-pass-value"
	requestID  = "req_0123456789abcdef"
	bearerTok  = "tok_opaque-bearer"
	authSvc    = "https://idp.test"
	authFed1   = "https://fed1.test"
	authFed2   = "https://fed2.test"
	authEnt    = "https://corp.test/agentpass" // an identifier with a path (G-24)
	entCfgURL  = "https://corp.test/agentpass/config"
	initSecret = "init-secret-<&\">'"
)

func ref(id string) pass.AuthorityRef {
	if id == authEnt {
		return pass.AuthorityRef{Authority: authEnt, AuthorityConfigurationURL: entCfgURL}
	}
	return pass.AuthorityRef{Authority: id, AuthorityConfigurationURL: id + "/config"}
}

// call is one request a fake peer received.
type call struct {
	Method, URL string
	Header      http.Header
	Body        []byte
}

// fake is a Service at todo.test and Authorities at idp.test (service),
// fed1.test and fed2.test (federated) and corp.test (enterprise).
type fake struct {
	t   *testing.T
	net *testnet.Network

	mu    sync.Mutex
	calls []call

	// Crafted answers; each may be replaced by a test before Acquire.
	serviceConfig func() any
	resolve       func(w http.ResponseWriter, body []byte)
	authorityCfg  func(id string) any
	issue         func(w http.ResponseWriter, id string, body []byte)
	status        func(w http.ResponseWriter, n int, r *http.Request) // n counts status GETs from 1
	redeem        func(w http.ResponseWriter, n int, r *http.Request, body []byte)
	api           http.HandlerFunc
	statusGETs    int
	redeemPOSTs   int
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	switch b := v.(type) {
	case string:
		io.WriteString(w, b)
	default:
		_ = json.NewEncoder(w).Encode(v)
	}
}

func writeErr(w http.ResponseWriter, status int, code pass.Code) {
	writeJSON(w, status, pass.Fail(code, "crafted").WithStatus(status).Body())
}

func defaultServiceConfig() map[string]any {
	return map[string]any{
		"version":  "0.1",
		"kind":     "service",
		"service":  map[string]any{"origin": svcOrigin, "name": "To-do"},
		"jwks_uri": svcOrigin + "/jwks",
		"trust": map[string]any{
			"service_authority":             ref(authSvc),
			"trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1), ref(authFed2)},
		},
		"endpoints": map[string]any{
			"resolve_authorities":    svcOrigin + "/resolve",
			"redeem_browser_session": svcOrigin + "/redeem-browser-session",
			"redeem_bearer_token":    svcOrigin + "/redeem-bearer-token",
			"available_scopes":       svcOrigin + "/scopes",
		},
	}
}

func defaultAuthorityConfig(id string) map[string]any {
	mode := map[string]string{authSvc: "service", authFed1: "federated", authFed2: "federated", authEnt: "enterprise"}[id]
	return map[string]any{
		"version":    "0.1",
		"authority":  id,
		"trust_mode": mode,
		"jwks_uri":   id + "/jwks",
		"endpoints": map[string]any{
			"issuance":            id + "/issue",
			"issuance_status":     id + "/status/{id}",
			"validate":            id + "/validate",
			"authorization_check": id + "/check",
		},
	}
}

func statusDoc(status pass.Status, extra map[string]any) map[string]any {
	m := map[string]any{"id": requestID, "status": status}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func approved(t pass.PassType) map[string]any {
	return statusDoc(pass.StatusApproved, map[string]any{"type": t, "agentpass": pass.AgentPass{Type: t, Value: passValue}})
}

func newFake(t *testing.T) *fake {
	t.Helper()
	f := &fake{t: t, net: testnet.New(t)}
	f.serviceConfig = func() any { return defaultServiceConfig() }
	f.resolve = func(w http.ResponseWriter, _ []byte) {
		writeJSON(w, 200, map[string]any{"service_authority": ref(authSvc)})
	}
	f.authorityCfg = func(id string) any { return defaultAuthorityConfig(id) }
	f.issue = func(w http.ResponseWriter, _ string, body []byte) {
		var req pass.IssuanceRequest
		_ = json.Unmarshal(body, &req)
		writeJSON(w, http.StatusAccepted, statusDoc(pass.StatusPending, map[string]any{"type": req.Type, "poll_after_ms": 100}))
	}
	f.status = func(w http.ResponseWriter, _ int, _ *http.Request) { writeJSON(w, 200, approved(pass.BearerToken)) }
	f.redeem = func(w http.ResponseWriter, _ int, r *http.Request, body []byte) {
		if strings.HasSuffix(r.URL.Path, "browser-session") {
			writeJSON(w, 200, map[string]any{
				"initialization_url":     svcOrigin + "/agentpass/init",
				"one_time":               true,
				"initialization_request": map[string]any{"method": "POST", "form_fields": map[string]string{"initialization_token": initSecret}},
			})
			return
		}
		writeJSON(w, 200, map[string]any{"bearer_token": bearerTok, "scope": []string{"tickets:read"}, "expires_in": 600})
	}
	f.api = func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{"ok": true}) }

	f.net.Serve("todo.test", http.HandlerFunc(f.serveService))
	for _, id := range []string{authSvc, authFed1, authFed2, authEnt} {
		host, _ := pass.Host(id)
		f.net.Serve(host, http.HandlerFunc(f.serveAuthority))
	}
	f.net.Serve("evil.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.record(r, nil)
		writeJSON(w, 200, map[string]any{})
	}))
	f.net.PublishService("todo.test", svcConfig)
	return f
}

func (f *fake) record(r *http.Request, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{Method: r.Method, URL: "https://" + r.Host + r.URL.RequestURI(), Header: r.Header.Clone(), Body: body})
}

func (f *fake) serveService(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	f.record(r, body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	switch {
	case r.URL.Path == "/.well-known/agentpass-service":
		writeJSON(w, 200, f.serviceConfig())
	case r.URL.Path == "/resolve":
		f.resolve(w, body)
	case strings.HasPrefix(r.URL.Path, "/redeem-"):
		f.mu.Lock()
		f.redeemPOSTs++
		n := f.redeemPOSTs
		f.mu.Unlock()
		f.redeem(w, n, r, body)
	default:
		f.api(w, r)
	}
}

func (f *fake) serveAuthority(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	f.record(r, body)
	id := "https://" + r.Host
	if r.Host == "corp.test" {
		id = authEnt
	}
	p := strings.TrimPrefix("https://"+r.Host+r.URL.Path, id)
	switch {
	case p == "/config":
		writeJSON(w, 200, f.authorityCfg(id))
	case p == "/issue":
		f.issue(w, id, body)
	case strings.HasPrefix(p, "/status/"):
		f.mu.Lock()
		f.statusGETs++
		n := f.statusGETs
		f.mu.Unlock()
		f.status(w, n, r)
	default:
		http.NotFound(w, r)
	}
}

// callsTo returns the calls whose URL starts with prefix.
func (f *fake) callsTo(prefix string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if strings.HasPrefix(c.URL, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fake) urls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, c.Method+" "+c.URL)
	}
	return out
}

// issuanceBody returns the single issuance request sent to authority id.
func (f *fake) issuanceBody(id string) pass.IssuanceRequest {
	f.t.Helper()
	cs := f.callsTo(id + "/issue")
	if len(cs) != 1 {
		f.t.Fatalf("issuance POSTs to %s = %d, want 1 (calls: %v)", id, len(cs), f.urls())
	}
	var req pass.IssuanceRequest
	if err := pass.Decode(cs[0].Body, &req); err != nil {
		f.t.Fatalf("issuance body invalid (H-ISS-2): %v", err)
	}
	return req
}

// recorder records the delays the client asks to sleep, without sleeping.
type recorder struct {
	mu     sync.Mutex
	delays []time.Duration
	onCall func(n int) // called with the number of sleeps so far
}

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.delays = append(r.delays, d)
	n := len(r.delays)
	r.mu.Unlock()
	if r.onCall != nil {
		r.onCall(n)
	}
	return ctx.Err()
}

func (r *recorder) all() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.delays...)
}

// httpClient returns a client of the network that keeps no idle
// connections, so that closing the network's servers does not wait for them.
func (f *fake) httpClient() *http.Client {
	tr := f.net.Client().Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// client returns a Client for the fake network whose sleeps are recorded.
func (f *fake) client(cfg Config) (*Client, *recorder) {
	f.t.Helper()
	if cfg.HarnessID == "" {
		cfg.HarnessID = harnessID
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = f.httpClient()
	}
	if cfg.Discovery == nil {
		dc := f.net.DiscoveryConfig()
		dc.HTTPClient = f.httpClient()
		d, err := discovery.New(dc)
		if err != nil {
			f.t.Fatal(err)
		}
		cfg.Discovery = d
	}
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	cfg.InsecureAllowPrivateNetworks = true // the network is on loopback
	c, err := New(cfg)
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	rec := &recorder{}
	c.sleep = rec.sleep
	c.jitter = func() float64 { return 0.5 }
	return c, rec
}

func bearerRequest() Request {
	return Request{Service: svcOrigin, User: userEmail, Task: pass.Task{ID: "task-1", Description: "Read my open tickets"}}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return string(b)
}
