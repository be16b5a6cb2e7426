package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// clock is the injected, controllable time source of a test. It starts at
// the real time (certificates of the test network are valid now).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// records returns the JSON log records whose message is msg.
func (s *syncBuffer) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// Host names of the test network.
const (
	appHost  = "app.test"      // the Service
	idpHost  = "idp.corp.test" // an Enterprise Authority
	fedHost  = "fed.test"      // a Federated Authority
	fed2Host = "fed2.test"     // a second Federated Authority
	saHost   = "sa.app.test"   // the Service's own Authority
	rogue    = "rogue.test"    // an Authority nobody trusts
	appURL   = "https://" + appHost
)

var testScopes = []pass.ScopeInfo{
	{Name: "tickets:read", Description: "Read tickets"},
	{Name: "tickets:write", Description: "Create and edit tickets"},
	{Name: "admin"},
}

// env is a Service on a loopback network with fake Authorities.
type env struct {
	t     testing.TB
	net   *testnet.Network
	clock *clock
	logs  *syncBuffer
	store *service.MemoryStore
	// replay is the Service's replay cache (every kind, prefixed), so
	// tests can count its entries.
	replay *dpop.MemoryReplayCache
	svc    *service.Service
	cfg    service.Config
	// client reaches the network's hosts without keep-alives.
	client *http.Client

	idp, fed, fed2, sa, rogue *fakeAuthority
}

// newEnv starts the network, the fake Authorities (enterprise idp.corp.test
// for corp.test, federated fed.test and fed2.test, the Service Authority
// sa.app.test, and an untrusted rogue.test) and the Service at app.test.
// mutate adjusts the Service configuration before New.
func newEnv(t *testing.T, mutate func(*service.Config)) *env {
	t.Helper()
	e := newNet(t)
	e.start(mutate)
	return e
}

// newNet starts the network and the fake Authorities, without the Service.
func newNet(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, net: testnet.New(t), clock: newClock(), logs: &syncBuffer{}}
	// Without keep-alives the network shuts down at once at the end of the
	// test instead of waiting for idle connections.
	tr := e.net.Client().Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	e.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	e.idp = e.newAuthority(idpHost, pass.TrustEnterprise)
	e.fed = e.newAuthority(fedHost, pass.TrustFederated)
	e.fed2 = e.newAuthority(fed2Host, pass.TrustFederated)
	e.sa = e.newAuthority(saHost, pass.TrustService)
	e.rogue = e.newAuthority(rogue, pass.TrustFederated)
	e.net.PublishEnterprise("corp.test", e.idp.configURL)
	return e
}

// start configures (mutate, optional) and serves the Service at app.test.
func (e *env) start(mutate func(*service.Config)) {
	t := e.t
	t.Helper()
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	e.store = service.NewMemoryStore()
	e.replay = dpop.NewMemoryReplayCache(dpop.WithClock(e.clock.Now))
	e.cfg = service.Config{
		ReplayCache:      e.replay,
		Origin:           appURL,
		Name:             "Tickets",
		Keys:             keys,
		ServiceAuthority: &pass.AuthorityRef{Authority: e.sa.origin, AuthorityConfigurationURL: e.sa.configURL},
		TrustedFederated: []pass.AuthorityRef{
			{Authority: e.fed.origin, AuthorityConfigurationURL: e.fed.configURL},
			{Authority: e.fed2.origin, AuthorityConfigurationURL: e.fed2.configURL},
		},
		Scopes:     testScopes,
		Store:      e.store,
		Discovery:  e.discovery(),
		HTTPClient: e.client,
		// Every host of the test network is on loopback.
		InsecureAllowPrivateNetworks: true,
		Now:                          e.clock.Now,
		Logger:                       slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&e.cfg)
	}
	e.svc, err = service.New(e.cfg)
	if err != nil {
		t.Fatalf("service.New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/agentpass/", e.svc)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := service.DelegationFrom(r.Context())
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"user": d.User, "agent": d.Agent, "scope": d.Scope, "credential": d.Credential,
			"chain": d.Chain})
	})
	mux.Handle("/api/tickets", e.svc.Middleware(service.RequireScope("tickets:read")(api)))
	mux.Handle("/api/admin", e.svc.Middleware(service.RequireScope("admin")(api)))
	mux.Handle("/", e.svc.Middleware(api))
	e.net.Serve(appHost, mux)
	e.net.PublishService(appHost, e.svc.ConfigurationURL())
}

func (e *env) discovery() *discovery.Client {
	cfg := e.net.DiscoveryConfig()
	cfg.HTTPClient = e.client
	cfg.Now = e.clock.Now
	d, err := discovery.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// fakeAuthority is a real TLS Authority with scripted answers. It
// authenticates the Service's assertions like a real one (Service
// discovery, JWKS, iss and aud), so tests also check what the Service
// sends.
type fakeAuthority struct {
	e         *env
	host      string
	origin    string
	configURL string
	keys      *dpop.KeySet

	mu     sync.Mutex
	config pass.AuthorityConfiguration
	passes map[string]*fakePass
	// authz maps authorization ids to the scope a check returns; a missing
	// id answers 404.
	authz map[string]*pass.AuthorizationCheckResponse
	// raw, when set, replaces the validate answer.
	raw func() (int, string)
	// down makes every endpoint except the configuration answer 503.
	down bool

	validateCalls, checkCalls, closeCalls atomic.Int32
	validateOK                            atomic.Int32 // validations answered 200 (the pass consumed)
	// failCloses makes that many close calls answer 503 first.
	failCloses atomic.Int32
	// closes, when set, receives the id of every successful close.
	closes chan string
	// suspended maps authorization ids whose check answers the 404 of a
	// suspended mission, with the mission member (mission extension).
	suspended map[string]*pass.MissionInfo
	// reports receives every valid mission report (mission extension);
	// onReport, when set, sees each one first.
	reports     chan reportCall
	onReport    func(pass.MissionReportRequest)
	reportCalls atomic.Int32
	// configPatch replaces top-level members of the configuration document
	// with raw JSON (to serve broken extensions).
	configPatch      map[string]string
	lastValidateBody atomic.Value // string
	lastAssertion    atomic.Value // *assertion.Claims
	closed           sync.Map     // authorization id -> action
	// jwksCalls counts JWKS fetches; poll, when set, serves /events/poll
	// (events extension).
	jwksCalls atomic.Int32
	poll      http.Handler
}

// reportCall is a mission report the fake Authority received, and when
// (on the test's clock).
type reportCall struct {
	req pass.MissionReportRequest
	at  time.Time
}

// speakMission makes a advertise the mission extension with its report
// endpoint, as an Authority of the mission layer does.
func (a *fakeAuthority) speakMission() {
	a.setConfig(func(c *pass.AuthorityConfiguration) {
		var err error
		c.Extensions, err = c.Extensions.With(pass.ExtMission, pass.Extension{Version: "1.0", Endpoints: map[string]string{
			"mission": a.origin + "/mission", "mission_complete": a.origin + "/mission/complete", "mission_report": a.origin + "/mission/report",
		}})
		if err != nil {
			panic(err)
		}
	})
}

// suspend makes the check of id answer the suspended-404 with m.
func (a *fakeAuthority) suspend(id string, m *pass.MissionInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m == nil {
		delete(a.suspended, id)
		return
	}
	a.suspended[id] = m
}

type fakePass struct {
	resp     pass.ValidationResponse
	consumed bool
}

func (e *env) newAuthority(host string, mode pass.TrustMode) *fakeAuthority {
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		e.t.Fatal(err)
	}
	a := &fakeAuthority{e: e, host: host, origin: "https://" + host, keys: keys,
		passes: map[string]*fakePass{}, authz: map[string]*pass.AuthorizationCheckResponse{},
		suspended: map[string]*pass.MissionInfo{}, reports: make(chan reportCall, 64)}
	a.configURL = a.origin + "/ap"
	a.config = pass.AuthorityConfiguration{
		Version: "0.1", Authority: a.origin, TrustMode: mode, JWKSURI: a.origin + "/jwks",
		Endpoints: pass.AuthorityEndpoints{
			Issuance: a.origin + "/issue", IssuanceStatus: a.origin + "/issue/{id}",
			Validate: a.origin + "/validate", AuthorizationCheck: a.origin + "/check",
			AuthorizationClose: a.origin + "/close",
		},
	}
	e.net.Serve(host, a)
	return a
}

func (a *fakeAuthority) setConfig(f func(*pass.AuthorityConfiguration)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(&a.config)
}

func (a *fakeAuthority) setDown(down bool) { a.mu.Lock(); a.down = down; a.mu.Unlock() }

func (a *fakeAuthority) setAuthz(id string, resp *pass.AuthorizationCheckResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if resp == nil {
		delete(a.authz, id)
		return
	}
	a.authz[id] = resp
}

// issue registers a pass whose validation returns resp (defaults filled in)
// and returns its value.
func (a *fakeAuthority) issue(resp pass.ValidationResponse) string {
	value := "pass-" + strings.TrimPrefix(randomID(), "_")
	if resp.AuthorizationID == "" {
		resp.AuthorizationID = "authz-" + randomID()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.passes[value] = &fakePass{resp: resp}
	a.authz[resp.AuthorizationID] = &pass.AuthorizationCheckResponse{Scope: resp.Scope, AuthorizationExpiresAt: resp.AuthorizationExpiresAt}
	if m := resp.Mission; m != nil {
		a.authz[resp.AuthorizationID].Mission = &pass.MissionInfo{ID: m.ID, State: m.State, Version: m.Version}
	}
	return value
}

var idCounter atomic.Int64

func randomID() string {
	return time.Now().Format("150405.000000") + "-" + itoa(idCounter.Add(1))
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func (a *fakeAuthority) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	cfg, down, patch := a.config, a.down, a.configPatch
	a.mu.Unlock()
	switch r.URL.Path {
	case "/ap":
		w.Header().Set("Cache-Control", "max-age=60")
		if patch != nil {
			b, _ := json.Marshal(cfg)
			var m map[string]json.RawMessage
			_ = json.Unmarshal(b, &m)
			for k, v := range patch {
				m[k] = json.RawMessage(v)
			}
			httpx.WriteJSON(w, http.StatusOK, m)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, cfg)
		return
	case "/jwks":
		a.jwksCalls.Add(1)
		httpx.WriteJSON(w, http.StatusOK, a.keys.JWKS())
		return
	case "/events/poll":
		a.mu.Lock()
		poll := a.poll
		a.mu.Unlock()
		if poll != nil {
			poll.ServeHTTP(w, r)
			return
		}
	}
	if down {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeAuthorityUnavailable, "down").WithStatus(http.StatusServiceUnavailable))
		return
	}
	// Authenticate the Service like a real Authority (A-VAL-1..3, S-RED-2).
	tok := httpx.BearerToken(r)
	parsed, err := assertion.Parse(tok)
	if err != nil {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidAssertion, "no assertion"))
		return
	}
	iss := parsed.Issuer()
	info, err := a.e.authorityDiscovery().DiscoverService(r.Context(), iss)
	if err != nil {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidAssertion, "unknown service"))
		return
	}
	v, err := assertion.NewVerifier(assertion.Config{
		Keys: a.e.authorityDiscovery(), Audience: cfg.Authority,
		Replay: dpop.NewMemoryReplayCache(dpop.WithClock(a.e.clock.Now)), Now: a.e.clock.Now,
	})
	if err != nil {
		panic(err)
	}
	claims, err := v.Verify(r.Context(), parsed, info.Configuration.JWKSURI, iss)
	if err != nil {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidAssertion, err.Error()))
		return
	}
	a.lastAssertion.Store(claims)
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	switch r.URL.Path {
	case "/validate":
		a.validateCalls.Add(1)
		a.lastValidateBody.Store(string(body))
		if a.raw != nil {
			status, raw := a.raw()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, raw)
			return
		}
		var req pass.ValidationRequest
		if err := pass.Decode(body, &req); err != nil {
			httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidRequest, "bad body"))
			return
		}
		a.mu.Lock()
		p, ok := a.passes[req.AgentPass.Value]
		consumed := ok && p.consumed
		if ok {
			p.consumed = true
		}
		a.mu.Unlock()
		switch {
		case !ok:
			httpx.WriteError(w, nil, pass.Fail(pass.CodeAgentPassInvalid, "unknown").WithStatus(http.StatusNotFound))
		case consumed:
			httpx.WriteError(w, nil, pass.Fail(pass.CodeAgentPassConsumed, "consumed"))
		default:
			a.validateOK.Add(1)
			httpx.WriteJSON(w, http.StatusOK, p.resp)
		}
	case "/check":
		a.checkCalls.Add(1)
		var req pass.AuthorizationCheckRequest
		if err := pass.Decode(body, &req); err != nil {
			httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidRequest, "bad body"))
			return
		}
		a.mu.Lock()
		resp, ok := a.authz[req.AuthorizationID]
		sus := a.suspended[req.AuthorizationID]
		a.mu.Unlock()
		if sus != nil {
			body := pass.Fail(pass.CodeMissionSuspended, "suspended").Body()
			body.Mission = sus
			httpx.WriteJSON(w, http.StatusNotFound, body)
			return
		}
		if !ok {
			httpx.WriteError(w, nil, pass.Fail(pass.CodeAuthorizationUnknown, "unknown"))
			return
		}
		httpx.WriteJSON(w, http.StatusOK, resp)
	case "/mission/report":
		a.reportCalls.Add(1)
		var req pass.MissionReportRequest
		if err := pass.Decode(body, &req); err != nil {
			httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidRequest, "bad body"))
			return
		}
		if a.onReport != nil {
			a.onReport(req)
		}
		a.reports <- reportCall{req: req, at: a.e.clock.Now()}
		w.WriteHeader(http.StatusNoContent)
	case "/close":
		a.closeCalls.Add(1)
		if a.failCloses.Add(-1) >= 0 {
			httpx.WriteError(w, nil, pass.Fail(pass.CodeTemporarilyUnavailable, "down"))
			return
		}
		var req pass.AuthorizationCloseRequest
		if err := pass.Decode(body, &req); err != nil {
			httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidRequest, "bad body"))
			return
		}
		if a.closes != nil {
			defer func() { a.closes <- req.AuthorizationID }()
		}
		a.closed.Store(req.AuthorizationID, req.Action)
		a.setAuthz(req.AuthorizationID, nil)
		status := pass.DelegationCompleted
		if req.Action == pass.CloseRevoke {
			status = pass.DelegationRevoked
		}
		httpx.WriteJSON(w, http.StatusOK, pass.AuthorizationCloseResponse{Status: status, ClosedAt: a.e.clock.Now()})
	default:
		http.NotFound(w, r)
	}
}

var authorityDiscoveries sync.Map // *env -> *discovery.Client

// authorityDiscovery is the discovery client the fake Authorities share.
func (e *env) authorityDiscovery() *discovery.Client {
	if d, ok := authorityDiscoveries.Load(e); ok {
		return d.(*discovery.Client)
	}
	d, _ := authorityDiscoveries.LoadOrStore(e, e.discovery())
	return d.(*discovery.Client)
}

// harness is the Harness side of a test: an ephemeral key and a harness id.
type harness struct {
	id  string
	key *dpop.Key
}

func newHarness(t testing.TB) *harness {
	k, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	return &harness{id: "harness-" + randomID(), key: k}
}

func (h *harness) cnf() *pass.Cnf { return &pass.Cnf{JWK: h.key.PublicJSON()} }

// proof makes a harness proof for a redemption at endpoint.
func (h *harness) proof(t testing.TB, e *env, endpoint, value string) *pass.JWTContainer {
	t.Helper()
	jwt, err := h.key.HarnessProof(dpop.ProofParams{
		HarnessID: h.id, Audience: appURL, Method: http.MethodPost, URL: endpoint, AgentPass: value, Now: e.clock.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &pass.JWTContainer{JWT: jwt}
}

func (e *env) endpoint(typ pass.PassType) string {
	c := e.svc.Configuration()
	if typ == pass.BrowserSession {
		return c.Endpoints.RedeemBrowserSession
	}
	return c.Endpoints.RedeemBearerToken
}

// response is an HTTP answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) errorMessage() string {
	var er pass.ErrorResponse
	if json.Unmarshal(r.body, &er) != nil {
		return ""
	}
	return er.Error.Message
}

func (r *response) errorCode() pass.Code {
	var er pass.ErrorResponse
	_ = json.Unmarshal(r.body, &er)
	return er.Error.Code
}

func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request over the network.
func (e *env) do(method, rawURL string, header http.Header, body io.Reader) *response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, rawURL, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	client := *e.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) postJSON(rawURL string, v any, header http.Header) *response {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", "application/json")
	return e.do(http.MethodPost, rawURL, header, bytes.NewReader(b))
}

// redeem posts a redemption request to the endpoint of typ.
func (e *env) redeem(typ pass.PassType, req pass.RedemptionRequest, header http.Header) *response {
	e.t.Helper()
	if req.RequestedScope != nil && len(req.RequestedScope) == 0 {
		// omitempty drops an empty requested_scope; send it explicitly.
		b, _ := json.Marshal(req)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		m["requested_scope"] = []string{}
		return e.postJSON(e.endpoint(typ), m, header)
	}
	return e.postJSON(e.endpoint(typ), req, header)
}

func (e *env) resolve(email string) *response {
	e.t.Helper()
	return e.postJSON(e.svc.Configuration().Endpoints.ResolveAuthorities, pass.ResolutionRequest{User: pass.User{Email: email}}, nil)
}

// get calls an API path of the app with the given authorization.
func (e *env) get(path string, header http.Header) *response {
	e.t.Helper()
	return e.do(http.MethodGet, appURL+path, header, nil)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// validation returns a default validation response for a bearer pass.
func validation(user string, typ pass.PassType, scope ...string) pass.ValidationResponse {
	if len(scope) == 0 {
		scope = []string{"tickets:read"}
	}
	return pass.ValidationResponse{
		User: pass.User{Email: user}, Agent: pass.Agent{ID: "agent-7"}, Scope: scope, Type: typ,
		Task: &pass.Task{ID: "task-1", Description: "triage tickets"},
	}
}

// redemption builds a request for a pass issued by a.
func redemption(a *fakeAuthority, typ pass.PassType, user, value string) pass.RedemptionRequest {
	return pass.RedemptionRequest{
		AgentPass: pass.AgentPass{Type: typ, Value: value},
		Authority: a.origin,
		User:      pass.User{Email: user},
	}
}

func queryToken(t *testing.T, initURL string) string {
	t.Helper()
	u, err := url.Parse(initURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

// newEnvlessDiscovery is a discovery client for tests that never look
// anything up.
func newEnvlessDiscovery(t *testing.T) *discovery.Client {
	d, err := discovery.New(discovery.Config{Nameservers: []string{"127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
