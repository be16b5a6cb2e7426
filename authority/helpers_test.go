package authority_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/spectest"
	"github.com/go-jose/go-jose/v4"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

var ctx = context.Background()

// clock is a settable clock shared by every party of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	authID     = "https://idp.corp.test"
	vendorIss  = "https://vendor.test"
	userEmail  = "alex@corp.test"
	harnessID  = "claude-code"
	taskDesc   = "Triage and respond to open support tickets"
	svcHost    = "todo.test"
	otherHost  = "other.test"
	corpDomain = "corp.test"
)

// env is a loopback AgentPass network with an Enterprise Authority at
// idp.corp.test (published for corp.test), a Service at todo.test and a
// harness attestation vendor.
type env struct {
	t      testing.TB
	net    *testnet.Network
	clock  *clock
	auth   *authority.Authority
	base   string
	svc    *deploy.TestService
	vendor *dpop.Key
	logs   *syncBuffer
	pended []authority.Request
	mu     sync.Mutex
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t testing.TB, opts ...func(*authority.Config)) *env {
	t.Helper()
	e := &env{t: t, net: testnet.New(t), clock: &clock{t: authoritytest.T0}, logs: &syncBuffer{}}
	vendor, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	e.vendor = vendor
	ks, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	dc := e.net.DiscoveryConfig()
	dc.Now = e.clock.Now
	disc, err := discovery.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := authority.Config{
		Identifier: authID, TrustMode: pass.TrustEnterprise, Keys: ks,
		Attesters: []dpop.Attester{{Issuer: vendorIss, Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{vendor.Public()}}}},
		Discovery: disc, HTTPClient: e.net.Client(), InsecureAllowPrivateNetworks: true, Now: e.clock.Now,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnPending: func(_ context.Context, r authority.Request) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.pended = append(e.pended, r)
		},
		ApprovalURL: func(id string) string { return authID + "/approve/" + id },
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.auth, err = authority.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.base = strings.TrimSuffix(cfg.BaseURL, "/")
	if e.base == "" {
		e.base = authID
	}
	host := strings.TrimPrefix(authID, "https://")
	e.net.Serve(host, e.auth)
	e.net.PublishEnterprise(corpDomain, e.auth.ConfigurationURL())
	e.svc = deploy.NewTestService(e.net, svcHost, e.auth.ConfigurationURL(), e.clock.Now)
	return e
}

// harness is a Harness's side of an issuance: its holder key and request.
type harness struct {
	key *dpop.Key
	req pass.IssuanceRequest
}

// newHarness returns a bound, attested, task-attested browser request.
func (e *env) newHarness() *harness {
	e.t.Helper()
	k, err := dpop.GenerateKey("ES256")
	if err != nil {
		e.t.Fatal(err)
	}
	h := &harness{key: k, req: pass.IssuanceRequest{
		Type: pass.BrowserSession, Service: pass.ServiceRef{Origin: e.svc.Origin}, User: pass.User{Email: userEmail},
		Harness: pass.HarnessInfo{ID: harnessID, Cnf: &pass.Cnf{JWK: k.PublicJSON()}, Extensions: pass.HarnessExtensions{pass.ExtHolderBinding}},
		Task:    pass.Task{ID: "task-1", Description: taskDesc},
		Intent:  &pass.Intent{DestinationURL: e.svc.Origin + "/inbox"},
	}}
	h.attest(e, harnessID)
	h.attestTask(e)
	return h
}

// plainHarness is a v0.1 harness without holder binding.
func (e *env) plainHarness() *harness {
	h := e.newHarness()
	h.req.Harness.Cnf, h.req.Harness.Attestation, h.req.Task.Attestation, h.req.Harness.Extensions = nil, nil, nil, nil
	return h
}

// v01Harness is a v0.1 harness with holder binding but without the
// holder-binding extension: it sends harness.cnf and no signal.
func (e *env) v01Harness() *harness {
	h := e.newHarness()
	h.req.Harness.Extensions = nil
	return h
}

func (h *harness) attest(e *env, sub string) {
	e.t.Helper()
	jwt, err := e.vendor.HarnessAttestation(vendorIss, sub, h.key.PublicJSON(), 0, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	h.req.Harness.Attestation = &pass.JWTContainer{JWT: jwt}
}

func (h *harness) attestTask(e *env) {
	e.t.Helper()
	jwt, err := h.key.TaskAttestation(h.req.Harness.ID, h.req.Task.ID, h.req.Task.Description, 0, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	h.req.Task.Attestation = &pass.JWTContainer{JWT: jwt}
}

// statusProof is the holder proof for reading request id's status.
func (h *harness) statusProof(e *env, id string) string {
	e.t.Helper()
	p, err := h.key.HarnessProof(dpop.ProofParams{
		HarnessID: h.req.Harness.ID, Audience: authID, Method: http.MethodGet,
		URL: e.auth.StatusURL(id), AgentPass: id, Now: e.clock.Now(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, url string, body any, header http.Header) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		var b []byte
		switch v := body.(type) {
		case []byte:
			b = v
		case string:
			b = []byte(v)
		default:
			var err error
			if b, err = json.Marshal(v); err != nil {
				e.t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := e.net.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, raw}
}

// issue posts an issuance request and decodes the status.
func (e *env) issue(req pass.IssuanceRequest) (response, *pass.IssuanceStatus) {
	e.t.Helper()
	r := e.do(http.MethodPost, e.base+"/requests", req, nil)
	if r.status != http.StatusAccepted {
		return r, nil
	}
	var st pass.IssuanceStatus
	if err := pass.Decode(r.body, &st); err != nil {
		e.t.Fatalf("issuance body %s: %v", r.body, err)
	}
	return r, &st
}

// poll reads a status with optional proof.
func (e *env) poll(id, proof string) (response, *pass.IssuanceStatus) {
	e.t.Helper()
	h := http.Header{}
	if proof != "" {
		h.Set(pass.ProofHeader, proof)
	}
	r := e.do(http.MethodGet, e.auth.StatusURL(id), nil, h)
	if r.status != http.StatusOK {
		return r, nil
	}
	var st pass.IssuanceStatus
	if err := pass.Decode(r.body, &st); err != nil {
		e.t.Fatalf("status body %s: %v", r.body, err)
	}
	return r, &st
}

// validate posts a validation as svc.
func (e *env) validate(svc *deploy.TestService, value string) (response, *pass.ValidationResponse) {
	e.t.Helper()
	status, body, err := svc.Post(e.net.Client(), e.base+"/validate", authID, pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}})
	if err != nil {
		e.t.Fatal(err)
	}
	r := response{status: status, body: body}
	if status != http.StatusOK {
		return r, nil
	}
	var v pass.ValidationResponse
	if err := pass.Decode(body, &v); err != nil {
		e.t.Fatalf("validation body %s: %v", body, err)
	}
	return r, &v
}

func (e *env) check(svc *deploy.TestService, id string) (response, *pass.AuthorizationCheckResponse) {
	e.t.Helper()
	status, body, err := svc.Post(e.net.Client(), e.base+"/authorization-check", authID, pass.AuthorizationCheckRequest{AuthorizationID: id})
	if err != nil {
		e.t.Fatal(err)
	}
	r := response{status: status, body: body}
	if status != http.StatusOK {
		return r, nil
	}
	var v pass.AuthorizationCheckResponse
	if err := pass.Decode(body, &v); err != nil {
		e.t.Fatalf("check body %s: %v", body, err)
	}
	return r, &v
}

func (e *env) closeAuthz(svc *deploy.TestService, id string, action pass.CloseAction) (response, *pass.AuthorizationCloseResponse) {
	e.t.Helper()
	status, body, err := svc.Post(e.net.Client(), e.base+"/authorization-close", authID, pass.AuthorizationCloseRequest{AuthorizationID: id, Action: action})
	if err != nil {
		e.t.Fatal(err)
	}
	r := response{status: status, body: body}
	if status != http.StatusOK {
		return r, nil
	}
	var v pass.AuthorizationCloseResponse
	if err := pass.Decode(body, &v); err != nil {
		e.t.Fatalf("close body %s: %v", body, err)
	}
	return r, &v
}

// approveAll makes every request approved at once with all scopes.
func approveAll(c *authority.Config) {
	c.Approver = authority.Rules(authority.Rule{Name: "all", Outcome: authority.Approve})
}

// approved issues h's request with an auto-approving Authority and returns
// the pass value.
func (e *env) approvedPass(h *harness) (string, *pass.IssuanceStatus) {
	e.t.Helper()
	r, st := e.issue(h.req)
	if st == nil || st.Status != pass.StatusApproved || st.AgentPass == nil {
		e.t.Fatalf("issuance: %d %s", r.status, r.body)
	}
	return st.AgentPass.Value, st
}

// wantError checks a structured error answer (X-ERR-1, X-ERR-2).
func wantError(t testing.TB, r response, status int, code pass.Code) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); r.header != nil && ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	var er pass.ErrorResponse
	if err := pass.Decode(r.body, &er); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if er.Error.Code != code {
		t.Fatalf("code %q, want %q (message %q)", er.Error.Code, code, er.Error.Message)
	}
	validateSchema(t, "error-response.schema.json", "", r.body)
}

// validateSchema validates a body against a spec schema (sub = "request"
// or "response" for wrapped schemas).
func validateSchema(t testing.TB, name, sub string, body []byte) {
	t.Helper()
	spectest.Validate(t, body, name, sub)
}
