package harness

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// claimsOf decodes a JWT payload without verifying it.
func claimsOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("payload: %v", err)
	}
	return m
}

// H-DISC-1, H-RES-1, H-ISS-1..3, HB-1, HB-2, TATT-2, TATT-3, TATT-4,
// TATT-13, H-POLL-1, the G-2 status proof, H-RED-1, H-RED-3..6, HB-4..6.
func TestAcquireAndRedeemBearer(t *testing.T) {
	f := newFake(t)
	var events []Event
	c, rec := f.client(Config{Progress: func(p Progress) { events = append(events, p.Event) }})
	f.status = func(w http.ResponseWriter, n int, _ *http.Request) {
		if n == 1 {
			writeJSON(w, 200, statusDoc(pass.StatusPending, map[string]any{"poll_after_ms": 2000}))
			return
		}
		writeJSON(w, 200, approved(pass.BearerToken))
	}
	ctx := context.Background()
	g, err := c.Acquire(ctx, bearerRequest())
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}

	// H-DISC-1, H-ISS-1: discovery, resolution, config, issuance, polls in order.
	want := []string{
		"GET " + svcConfig,
		"POST " + svcOrigin + "/resolve",
		"GET " + authSvc + "/config",
		"POST " + authSvc + "/issue",
		"GET " + authSvc + "/status/" + requestID,
		"GET " + authSvc + "/status/" + requestID,
	}
	if diff := cmp.Diff(want, f.urls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if n := f.net.DNS.Queries("_agentpass-service.todo.test"); n == 0 {
		t.Error("no _agentpass-service TXT query (H-DISC-1)")
	}
	// H-DISC-3: the Harness never looks up the enterprise record itself.
	if n := f.net.DNS.Queries("_agentpass.corp.test"); n != 0 {
		t.Errorf("_agentpass.corp.test queried %d times by the Harness (H-DISC-3)", n)
	}
	// H-RES-1
	var rr pass.ResolutionRequest
	if err := pass.Decode(f.callsTo(svcOrigin + "/resolve")[0].Body, &rr); err != nil || rr.User.Email != userEmail {
		t.Errorf("resolution body = %+v, %v; want user.email %s", rr, err, userEmail)
	}
	// H-ISS-3, HB-1, HB-2, H-ISS-4 (no intent for bearer).
	ir := f.issuanceBody(authSvc)
	if ir.Type != pass.BearerToken || ir.Service.Origin != svcOrigin || ir.User.Email != userEmail ||
		ir.Harness.ID != harnessID || ir.Task.ID != "task-1" || ir.Task.Description != "Read my open tickets" {
		t.Errorf("issuance body = %+v", ir)
	}
	if ir.Harness.Cnf == nil || !dpop.SameKey(ir.Harness.Cnf.JWK, g.Key.PublicJSON()) {
		t.Fatal("harness.cnf.jwk missing or not the grant key (HB-1)")
	}
	if strings.Contains(string(ir.Harness.Cnf.JWK), `"d"`) {
		t.Error("harness.cnf.jwk has a private member (HB-2)")
	}
	if ir.Intent != nil {
		t.Error("bearer issuance carries intent (H-ISS-4)")
	}
	if ir.Harness.Attestation != nil {
		t.Error("harness.attestation sent without a provider")
	}
	// TATT-2, TATT-3, TATT-4, TATT-13.
	if ir.Task.Attestation == nil {
		t.Fatal("no task.attestation (TATT-13)")
	}
	if err := dpop.VerifyTaskAttestation(ir.Task.Attestation.JWT, ir.Harness.Cnf.JWK, harnessID, "task-1", ir.Task.Description, t0, 0); err != nil {
		t.Errorf("task attestation does not verify with harness.cnf.jwk (TATT-4): %v", err)
	}
	tc := claimsOf(t, ir.Task.Attestation.JWT)
	if tc["task_description_hash"] != dpop.DescriptionHash("Read my open tickets") || len(tc["task_description_hash"].(string)) != 64 {
		t.Errorf("task_description_hash = %v (TATT-2)", tc["task_description_hash"])
	}
	if life := tc["exp"].(float64) - tc["iat"].(float64); life <= 0 || life > 300 {
		t.Errorf("task attestation lifetime %v s (TATT-3)", life)
	}
	// H-POLL-4: poll_after_ms 2000 is honoured; the first wait is the issuance hint (100 ms raised to MinPoll).
	if diff := cmp.Diff([]time.Duration{defaultMinPoll, 2 * time.Second}, rec.all()); diff != "" {
		t.Errorf("poll waits (-want +got):\n%s", diff)
	}
	// Issue #13: the request signals the hardening, so no one can redeem
	// its pass with a proof lacking htm, htu and aph.
	if !ir.Harness.Extensions.Has(pass.ExtHolderBinding) {
		t.Errorf("harness.extensions = %v, want the holder-binding signal", ir.Harness.Extensions)
	}
	if !ir.Harness.Extensions.Has(pass.ExtMission) {
		t.Errorf("harness.extensions = %v, want the mission extension", ir.Harness.Extensions)
	}
	// G-2 extension: every poll carries a holder proof for the status URL.
	statusURL := authSvc + "/status/" + requestID
	pv, err := dpop.NewProofVerifier(dpop.ProofVerifierConfig{Audience: authSvc, Replay: dpop.NewMemoryReplayCache(dpop.WithLimit(100), dpop.WithClock(fixedNow)), Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range f.callsTo(statusURL) {
		if _, err := pv.Verify(ctx, cl.Header.Get(pass.ProofHeader), ir.Harness.Cnf.JWK, dpop.ProofRequest{Method: "GET", URL: statusURL, AgentPass: requestID, HarnessID: harnessID, RequireBinding: true}); err != nil {
			t.Errorf("status proof: %v", err)
		}
	}
	if g.AgentPass().Value != passValue || g.Authority != authSvc || g.Branch != BranchService || g.RequestID != requestID {
		t.Errorf("grant = %v, authority %s, branch %s", g, g.Authority, g.Branch)
	}
	if strings.Contains(g.String(), passValue) || strings.Contains(g.AgentPass().String(), passValue) {
		t.Error("Grant.String leaks the pass")
	}

	tok, err := c.RedeemBearerToken(ctx, g, RedeemOptions{RequestedScope: pass.Scope{"tickets:read"}})
	if err != nil {
		t.Fatalf("RedeemBearerToken: %v", err)
	}
	if tok.Value() != bearerTok || tok.Type != "Bearer" || !tok.ExpiresAt.Equal(t0.Add(600*time.Second)) || !tok.Scope.Equal(pass.Scope{"tickets:read"}) {
		t.Errorf("token = %v, expires %v", tok, tok.ExpiresAt)
	}
	if strings.Contains(tok.String(), bearerTok) {
		t.Error("Token.String leaks the token")
	}
	// H-RED-1, H-RED-3..6.
	reds := f.callsTo(svcOrigin + "/redeem-")
	if len(reds) != 1 || reds[0].URL != svcOrigin+"/redeem-bearer-token" {
		t.Fatalf("redemptions = %v (H-RED-1)", f.urls())
	}
	var rb pass.RedemptionRequest
	if err := pass.Decode(reds[0].Body, &rb); err != nil {
		t.Fatalf("redemption body invalid (H-RED-3): %v", err)
	}
	wantBody := pass.RedemptionRequest{
		AgentPass:      pass.AgentPass{Type: pass.BearerToken, Value: passValue},
		Authority:      authSvc,
		User:           pass.User{Email: userEmail},
		HarnessProof:   rb.HarnessProof,
		RequestedScope: pass.Scope{"tickets:read"},
	}
	if diff := cmp.Diff(wantBody, rb); diff != "" {
		t.Errorf("redemption body (-want +got):\n%s", diff)
	}
	if rb.HarnessProof == nil {
		t.Fatal("no harness_proof (H-RED-5)")
	}
	// HB-4..6 with the holder-binding extension (htm, htu, aph).
	sv, err := dpop.NewProofVerifier(dpop.ProofVerifierConfig{Audience: svcOrigin, Replay: dpop.NewMemoryReplayCache(dpop.WithLimit(100), dpop.WithClock(fixedNow)), Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sv.Verify(ctx, rb.HarnessProof.JWT, ir.Harness.Cnf.JWK, dpop.ProofRequest{Method: "POST", URL: svcOrigin + "/redeem-bearer-token", AgentPass: passValue, HarnessID: harnessID, RequireBinding: true}); err != nil {
		t.Errorf("harness proof (HB-6): %v", err)
	}
	pc := claimsOf(t, rb.HarnessProof.JWT)
	for _, k := range []string{"iss", "aud", "iat", "exp", "jti"} {
		if _, ok := pc[k]; !ok {
			t.Errorf("proof lacks %s (HB-4)", k)
		}
	}
	if life := pc["exp"].(float64) - pc["iat"].(float64); life <= 0 || life > 300 {
		t.Errorf("proof lifetime %v s (HB-5)", life)
	}

	wantEvents := []Event{EventServiceDiscovered, EventAuthorityResolved, EventAuthorityChosen, EventRequestCreated, EventPending, EventApproved, EventRedeemed}
	if diff := cmp.Diff(wantEvents, events); diff != "" {
		t.Errorf("progress events (-want +got):\n%s", diff)
	}

	// A grant is single-use: no second redemption is even sent (H-POLL-7).
	if _, err := c.RedeemBearerToken(ctx, g, RedeemOptions{}); !errors.Is(err, ErrGrantUsed) {
		t.Errorf("second redemption: %v, want ErrGrantUsed", err)
	}
	if n := len(f.callsTo(svcOrigin + "/redeem-")); n != 1 {
		t.Errorf("redemption POSTs = %d, want 1", n)
	}
}

// HB-2, H-ISS-5: two tasks, two keys, two issuance requests with distinct task ids.
func TestAcquireFreshKeyPerTask(t *testing.T) {
	f := newFake(t)
	c, _ := f.client(Config{})
	req := bearerRequest()
	req.Task.ID = ""
	g1, err := c.Acquire(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := c.Acquire(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if g1.Key.Thumbprint() == g2.Key.Thumbprint() {
		t.Error("two tasks share a holder key (HB-2)")
	}
	if g1.Task.ID == "" || g1.Task.ID == g2.Task.ID {
		t.Errorf("task ids %q and %q must be distinct and non-empty (H-ISS-5)", g1.Task.ID, g2.Task.ID)
	}
}

// H-ISS-4: a browser-session request carries intent.destination_url.
// H-RED-2, browser bootstrap extension: initialization_methods, POST form.
func TestAcquireBrowserSession(t *testing.T) {
	f := newFake(t)
	c, _ := f.client(Config{})
	f.status = func(w http.ResponseWriter, _ int, _ *http.Request) { writeJSON(w, 200, approved(pass.BrowserSession)) }
	req := bearerRequest()
	req.Type = pass.BrowserSession
	req.Destination = svcOrigin + "/tickets"
	ctx := context.Background()
	g, err := c.Acquire(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ir := f.issuanceBody(authSvc)
	if ir.Type != pass.BrowserSession || ir.Intent == nil || ir.Intent.DestinationURL != svcOrigin+"/tickets" {
		t.Errorf("issuance type %s intent %+v (H-ISS-3, H-ISS-4)", ir.Type, ir.Intent)
	}
	if _, err := c.RedeemBearerToken(ctx, g, RedeemOptions{}); !errors.Is(err, ErrWrongType) {
		t.Fatalf("bearer redemption of a browser grant: %v, want ErrWrongType", err)
	}
	if g.Used() {
		t.Fatal("a refused type check spent the grant")
	}
	init, err := c.RedeemBrowserSession(ctx, g, RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rb pass.RedemptionRequest
	if err := pass.Decode(f.callsTo(svcOrigin + "/redeem-browser-session")[0].Body, &rb); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"POST", "GET"}, rb.InitializationMethods); diff != "" {
		t.Errorf("initialization_methods (-want +got):\n%s", diff)
	}
	if strings.Contains(init.String(), "init-secret") {
		t.Error("Initialization.String leaks the secret")
	}
	r, err := init.Take()
	if err != nil {
		t.Fatal(err)
	}
	want := InitRequest{Method: "POST", URL: svcOrigin + "/agentpass/init", FormFields: map[string]string{"initialization_token": initSecret}}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("init request (-want +got):\n%s", diff)
	}
	if _, err := init.Take(); !errors.Is(err, ErrInitializationUsed) {
		t.Errorf("second Take: %v, want ErrInitializationUsed (H-RED-7)", err)
	}
}

// A plain v0.1 Service answers a GET initialization URL.
func TestRedeemBrowserSessionGET(t *testing.T) {
	f := newFake(t)
	c, _ := f.client(Config{})
	f.status = func(w http.ResponseWriter, _ int, _ *http.Request) { writeJSON(w, 200, approved(pass.BrowserSession)) }
	f.redeem = func(w http.ResponseWriter, _ int, _ *http.Request, _ []byte) {
		writeJSON(w, 200, map[string]any{"initialization_url": svcOrigin + "/init?token=secret", "expires_at": t0.Add(time.Minute)})
	}
	req := bearerRequest()
	req.Type = pass.BrowserSession
	g, err := c.Acquire(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	init, err := c.RedeemBrowserSession(context.Background(), g, RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if init.Method != "GET" || !init.ExpiresAt.Equal(t0.Add(time.Minute)) || strings.Contains(init.String(), "secret") {
		t.Errorf("init = %v, expires %v", init, init.ExpiresAt)
	}
	r, _ := init.Take()
	if r.URL != svcOrigin+"/init?token=secret" || r.FormFields != nil {
		t.Errorf("init request = %+v", r)
	}
}

// H-RES-2..6, G-36: every resolution shape of HARDENING.md, and the refusals.
func TestResolutionShapes(t *testing.T) {
	chooseFed2 := func(_ context.Context, opts []pass.AuthorityRef) (pass.AuthorityRef, error) {
		return ref(authFed2), nil
	}
	tests := []struct {
		name       string
		answer     any
		cfg        Config
		authority  string // Request.Authority
		wantIssuer string // authority that receives the issuance, "" for none
		wantBranch Branch
		wantErr    error
		chooserHit bool
	}{
		{name: "enterprise H-RES-3", answer: map[string]any{"enterprise_authority": ref(authEnt)},
			cfg: Config{PreferredAuthority: authFed1}, wantIssuer: authEnt, wantBranch: BranchEnterprise},
		{name: "service H-RES-4", answer: map[string]any{"service_authority": ref(authSvc)},
			cfg: Config{ChooseAuthority: chooseFed2}, wantIssuer: authSvc, wantBranch: BranchService},
		{name: "federated with chooser H-RES-5", answer: map[string]any{"trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1), ref(authFed2)}},
			cfg: Config{ChooseAuthority: chooseFed2}, wantIssuer: authFed2, wantBranch: BranchFederated, chooserHit: true},
		{name: "federated without chooser", answer: map[string]any{"trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1), ref(authFed2)}},
			wantErr: ErrChoiceRequired},
		{name: "single federated option still needs a choice", answer: map[string]any{"trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1)}},
			wantErr: ErrChoiceRequired},
		{name: "preferred on offer", answer: map[string]any{"trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1), ref(authFed2)}},
			cfg: Config{PreferredAuthority: authFed1, ChooseAuthority: chooseFed2}, wantIssuer: authFed1, wantBranch: BranchFederated},
		{name: "request authority overrides preferred", answer: map[string]any{"trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1), ref(authFed2)}},
			cfg: Config{PreferredAuthority: authFed1}, authority: authFed2, wantIssuer: authFed2, wantBranch: BranchFederated},
		{name: "preferred not on offer H-RES-6", answer: map[string]any{"trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1)}},
			cfg: Config{PreferredAuthority: "https://other.test"}, wantErr: ErrChoiceRequired},
		{name: "chooser picks outside the list H-RES-6", answer: map[string]any{"trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1)}},
			cfg: Config{ChooseAuthority: chooseFed2}, wantErr: ErrChoiceRequired, chooserHit: true},
		{name: "service and federated G-36, federated chosen", answer: map[string]any{"service_authority": ref(authSvc), "trusted_federated_authorities": []pass.AuthorityRef{ref(authFed2)}},
			cfg: Config{ChooseAuthority: chooseFed2}, wantIssuer: authFed2, wantBranch: BranchFederated, chooserHit: true},
		{name: "service and federated G-36, service preferred", answer: map[string]any{"service_authority": ref(authSvc), "trusted_federated_authorities": []pass.AuthorityRef{ref(authFed2)}},
			cfg: Config{PreferredAuthority: authSvc}, wantIssuer: authSvc, wantBranch: BranchService},
		{name: "empty answer H-RES-2", answer: map[string]any{}, wantErr: ErrProtocol},
		{name: "enterprise and federated H-RES-2", answer: map[string]any{"enterprise_authority": ref(authEnt), "trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1)}},
			wantErr: ErrProtocol},
		{name: "empty federated list", answer: map[string]any{"trusted_federated_authorities": []pass.AuthorityRef{}}, wantErr: ErrProtocol},
		{name: "federated not in service configuration", answer: map[string]any{"trusted_federated_authorities": []pass.AuthorityRef{ref("https://other.test")}},
			cfg: Config{PreferredAuthority: "https://other.test"}, wantErr: ErrProtocol},
		{name: "service authority not in service configuration", answer: map[string]any{"service_authority": ref(authFed1)}, wantErr: ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.resolve = func(w http.ResponseWriter, _ []byte) { writeJSON(w, 200, tt.answer) }
			hit := false
			if ch := tt.cfg.ChooseAuthority; ch != nil {
				tt.cfg.ChooseAuthority = func(ctx context.Context, opts []pass.AuthorityRef) (pass.AuthorityRef, error) {
					hit = true
					return ch(ctx, opts)
				}
			}
			c, _ := f.client(tt.cfg)
			req := bearerRequest()
			req.Authority = tt.authority
			g, err := c.Acquire(context.Background(), req)
			if hit != tt.chooserHit {
				t.Errorf("chooser called = %v, want %v", hit, tt.chooserHit)
			}
			issued := f.callsTo("")
			var issuers []string
			for _, cl := range issued {
				if strings.HasSuffix(cl.URL, "/issue") {
					issuers = append(issuers, strings.TrimSuffix(cl.URL, "/issue"))
				}
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if len(issuers) != 0 {
					t.Errorf("issuance sent to %v despite the error", issuers)
				}
				return
			}
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			if diff := cmp.Diff([]string{tt.wantIssuer}, issuers); diff != "" {
				t.Errorf("issuance targets (-want +got):\n%s", diff)
			}
			if g.Authority != tt.wantIssuer || g.Branch != tt.wantBranch {
				t.Errorf("grant authority %s branch %s, want %s %s", g.Authority, g.Branch, tt.wantIssuer, tt.wantBranch)
			}
		})
	}
}

func TestChoiceRequiredErrorListsOptions(t *testing.T) {
	f := newFake(t)
	f.resolve = func(w http.ResponseWriter, _ []byte) {
		writeJSON(w, 200, map[string]any{"service_authority": ref(authSvc), "trusted_federated_authorities": []pass.AuthorityRef{ref(authFed1), ref(authFed2)}})
	}
	c, _ := f.client(Config{})
	_, err := c.Acquire(context.Background(), bearerRequest())
	var ce *ChoiceRequiredError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *ChoiceRequiredError", err)
	}
	if diff := cmp.Diff([]pass.AuthorityRef{ref(authSvc), ref(authFed1), ref(authFed2)}, ce.Options); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
}

// Resolution refusals by the Service are ErrResolution with the wire error.
func TestResolutionRefused(t *testing.T) {
	tests := []struct {
		name   string
		status int
		code   pass.Code
		is     error
	}{
		{"none", http.StatusForbidden, pass.CodeDelegationDisabled, pass.ErrForbidden},
		{"broken enterprise configuration", http.StatusBadGateway, pass.CodeDiscoveryFailed, pass.ErrUnavailable},
		{"no authority", http.StatusNotFound, pass.CodeNoAuthority, ErrResolution},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.resolve = func(w http.ResponseWriter, _ []byte) { writeErr(w, tt.status, tt.code) }
			c, _ := f.client(Config{})
			_, err := c.Acquire(context.Background(), bearerRequest())
			var pe *pass.PeerError
			if !errors.Is(err, ErrResolution) || !errors.Is(err, tt.is) || !errors.As(err, &pe) || pe.Code != tt.code {
				t.Fatalf("err = %v, want ErrResolution with %s", err, tt.code)
			}
			if len(f.callsTo(authSvc)) != 0 {
				t.Error("an Authority was contacted after a refused resolution")
			}
		})
	}
}

// H-DISC-2, X-VER-1, X-VER-2, X-VER-5, G-9, G-31: configurations are
// checked before anything is sent to the peer that published them.
func TestConfigurationChecks(t *testing.T) {
	tests := []struct {
		name       string
		svc        func(m map[string]any)
		auth       func(m map[string]any)
		wantErr    []error
		wantIssued bool
	}{
		{name: "service config without redeem_bearer_token H-DISC-2",
			svc:     func(m map[string]any) { delete(m["endpoints"].(map[string]any), "redeem_bearer_token") },
			wantErr: []error{discovery.ErrInvalidDocument}},
		{name: "service config kind authority H-DISC-2", svc: func(m map[string]any) { m["kind"] = "authority" },
			wantErr: []error{discovery.ErrInvalidDocument}},
		{name: "service config version 1.0 X-VER-1", svc: func(m map[string]any) { m["version"] = "1.0" },
			wantErr: []error{pass.ErrUnsupportedVersion}},
		{name: "authority config version 1.0 X-VER-1 X-VER-5", auth: func(m map[string]any) { m["version"] = "1.0" },
			wantErr: []error{pass.ErrUnsupportedVersion}},
		{name: "authority config version 0.9 with unknown members X-VER-2", auth: func(m map[string]any) {
			m["version"] = "0.9"
			m["x_future"] = map[string]any{}
		}, wantIssued: true},
		{name: "authority config names another authority G-9", auth: func(m map[string]any) { m["authority"] = authFed1 },
			wantErr: []error{ErrProtocol}},
		{name: "authority config with another trust mode G-31", auth: func(m map[string]any) { m["trust_mode"] = "federated" },
			wantErr: []error{ErrProtocol}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.svc != nil {
				f.serviceConfig = func() any { m := defaultServiceConfig(); tt.svc(m); return m }
			}
			if tt.auth != nil {
				f.authorityCfg = func(id string) any { m := defaultAuthorityConfig(id); tt.auth(m); return m }
			}
			c, _ := f.client(Config{})
			_, err := c.Acquire(context.Background(), bearerRequest())
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Errorf("Acquire: %v", err)
			}
			if tt.svc != nil && len(f.callsTo(svcOrigin+"/resolve")) != 0 {
				t.Error("resolution sent despite an invalid Service configuration")
			}
			if issued := len(f.callsTo(authSvc+"/issue")) > 0; issued != tt.wantIssued {
				t.Errorf("issuance sent = %v, want %v", issued, tt.wantIssued)
			}
		})
	}
}

// H-POLL-2, H-POLL-3, H-POLL-6, H-POLL-7: terminal statuses and broken
// status documents.
func TestPollingOutcomes(t *testing.T) {
	pending := func(w http.ResponseWriter) { writeJSON(w, 200, statusDoc(pass.StatusPending, nil)) }
	tests := []struct {
		name      string
		status    func(w http.ResponseWriter, n int)
		wantErr   error
		wantGETs  int
		checkErr  func(t *testing.T, err error)
		wantEvent Event
	}{
		{name: "3 pending then denied H-POLL-3", status: func(w http.ResponseWriter, n int) {
			if n <= 3 {
				pending(w)
				return
			}
			writeJSON(w, 200, statusDoc(pass.StatusDenied, map[string]any{"reason": "not during the freeze"}))
		}, wantErr: ErrDenied, wantGETs: 4, wantEvent: EventDenied, checkErr: func(t *testing.T, err error) {
			var d *DeniedError
			if !errors.As(err, &d) || d.Reason != "not during the freeze" || d.Authority != authSvc {
				t.Errorf("denied error = %#v", err)
			}
		}},
		{name: "expired", status: func(w http.ResponseWriter, n int) { writeJSON(w, 200, statusDoc(pass.StatusExpired, nil)) },
			wantErr: ErrExpired, wantGETs: 1, wantEvent: EventExpired},
		{name: "canceled", status: func(w http.ResponseWriter, n int) { writeJSON(w, 200, statusDoc(pass.StatusCanceled, nil)) },
			wantErr: ErrCanceled, wantGETs: 1, wantEvent: EventCanceled},
		{name: "404 while polling", status: func(w http.ResponseWriter, n int) { writeErr(w, 404, pass.CodeRequestUnknown) },
			wantErr: ErrExpired, wantGETs: 1, wantEvent: EventExpired},
		{name: "410 while polling", status: func(w http.ResponseWriter, n int) { writeErr(w, 410, pass.CodeRequestGone) },
			wantErr: ErrExpired, wantGETs: 1, wantEvent: EventExpired},
		{name: "approved without pass H-POLL-6", status: func(w http.ResponseWriter, n int) { writeJSON(w, 200, statusDoc(pass.StatusApproved, nil)) },
			wantErr: ErrProtocol, wantGETs: 1},
		{name: "approved pass of the other type", status: func(w http.ResponseWriter, n int) { writeJSON(w, 200, approved(pass.BrowserSession)) },
			wantErr: ErrProtocol, wantGETs: 1},
		{name: "unknown status H-POLL-2", status: func(w http.ResponseWriter, n int) { writeJSON(w, 200, `{"id":"`+requestID+`","status":"weird"}`) },
			wantErr: ErrProtocol, wantGETs: 1},
		{name: "missing id H-POLL-2", status: func(w http.ResponseWriter, n int) { writeJSON(w, 200, `{"status":"pending"}`) },
			wantErr: ErrProtocol, wantGETs: 1},
		{name: "another request id", status: func(w http.ResponseWriter, n int) { writeJSON(w, 200, `{"id":"other","status":"pending"}`) },
			wantErr: ErrProtocol, wantGETs: 1},
		{name: "proof refused", status: func(w http.ResponseWriter, n int) { writeErr(w, 401, pass.CodeProofRequired) },
			wantErr: pass.ErrUnauthenticated, wantGETs: 1},
		{name: "5xx and 429 are waited out", status: func(w http.ResponseWriter, n int) {
			switch n {
			case 1:
				writeErr(w, 503, pass.CodeAuthorityUnavailable)
			case 2:
				w.Header().Set("Retry-After", "3")
				writeErr(w, 429, pass.CodeRateLimited)
			default:
				writeJSON(w, 200, approved(pass.BearerToken))
			}
		}, wantGETs: 3, wantEvent: EventApproved},
		{name: "persistent 5xx", status: func(w http.ResponseWriter, n int) { writeErr(w, 503, pass.CodeAuthorityUnavailable) },
			wantErr: pass.ErrUnavailable, wantGETs: maxPollFailures},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.status = func(w http.ResponseWriter, n int, _ *http.Request) { tt.status(w, n) }
			var last Event
			c, _ := f.client(Config{Progress: func(p Progress) { last = p.Event }})
			g, err := c.Acquire(context.Background(), bearerRequest())
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			if tt.wantErr != nil && (!errors.Is(err, tt.wantErr) || g != nil) {
				t.Fatalf("Acquire = %v, %v; want %v", g, err, tt.wantErr)
			}
			if tt.checkErr != nil {
				tt.checkErr(t, err)
			}
			if n := len(f.callsTo(authSvc + "/status/" + requestID)); n != tt.wantGETs {
				t.Errorf("status GETs = %d, want %d", n, tt.wantGETs)
			}
			if tt.wantEvent != "" && last != tt.wantEvent {
				t.Errorf("last event = %s, want %s", last, tt.wantEvent)
			}
			if len(f.callsTo(svcOrigin+"/redeem-")) != 0 {
				t.Error("a redemption was sent")
			}
			if err != nil && strings.Contains(err.Error(), requestID) {
				t.Errorf("error text shows the request id (G-2): %v", err)
			}
		})
	}
}

// H-POLL-5: without poll_after_ms the waits back off, never decrease, never
// go below MinPoll (and so never below 100 ms), and stop at MaxPoll.
func TestPollingBackoff(t *testing.T) {
	f := newFake(t)
	f.issue = func(w http.ResponseWriter, _ string, _ []byte) { writeJSON(w, 202, statusDoc(pass.StatusPending, nil)) }
	f.status = func(w http.ResponseWriter, n int, _ *http.Request) {
		if n <= 20 {
			writeJSON(w, 200, statusDoc(pass.StatusPending, nil))
			return
		}
		writeJSON(w, 200, approved(pass.BearerToken))
	}
	c, rec := f.client(Config{MinPoll: 200 * time.Millisecond, MaxPoll: 5 * time.Second})
	i := 0
	jitters := []float64{0, 0.99, 0.3, 0.99, 0, 0.7}
	c.jitter = func() float64 { i++; return jitters[i%len(jitters)] }
	if _, err := c.Acquire(context.Background(), bearerRequest()); err != nil {
		t.Fatal(err)
	}
	d := rec.all()
	if len(d) != 21 {
		t.Fatalf("waits = %d, want 21", len(d))
	}
	for k, v := range d {
		if v < 200*time.Millisecond || v < minPollFloor || v > 5*time.Second {
			t.Errorf("wait %d = %v outside [MinPoll, MaxPoll]", k, v)
		}
		if k > 0 && v < d[k-1] {
			t.Errorf("wait %d = %v < previous %v", k, v, d[k-1])
		}
	}
	if d[len(d)-1] < 5*time.Second*3/4 {
		t.Errorf("backoff did not grow towards MaxPoll: last wait %v", d[len(d)-1])
	}
}

// H-POLL-4, H-POLL-5: poll_after_ms is honoured but raised to MinPoll.
func TestPollAfterFloor(t *testing.T) {
	for _, tt := range []struct {
		ms   int64
		want time.Duration
	}{{0, defaultMinPoll}, {10, defaultMinPoll}, {1500, 1500 * time.Millisecond}, {1 << 60, maxPollAfter}} {
		c := &Client{minPoll: defaultMinPoll, maxPoll: defaultMaxPoll, jitter: func() float64 { return 0 }}
		if got := c.pollDelay(&tt.ms, &backoff{}); got != tt.want {
			t.Errorf("poll_after_ms %d: wait %v, want %v", tt.ms, got, tt.want)
		}
	}
}

// Cancellation mid-poll stops Acquire with the context's error.
func TestAcquireCanceledMidPoll(t *testing.T) {
	f := newFake(t)
	f.status = func(w http.ResponseWriter, _ int, _ *http.Request) {
		writeJSON(w, 200, statusDoc(pass.StatusPending, nil))
	}
	c, rec := f.client(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	rec.onCall = func(n int) {
		if n == 3 {
			cancel()
		}
	}
	_, err := c.Acquire(ctx, bearerRequest())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := len(f.callsTo(authSvc + "/status/")); n != 2 {
		t.Errorf("status GETs = %d, want 2 (none after cancellation)", n)
	}
}

// Invalid requests are refused before any network call.
func TestAcquireInvalidRequest(t *testing.T) {
	f := newFake(t)
	c, _ := f.client(Config{})
	base := bearerRequest()
	tests := []struct {
		name string
		mod  func(r *Request)
	}{
		{"service not an origin", func(r *Request) { r.Service = "https://todo.test/path" }},
		{"service over http", func(r *Request) { r.Service = "http://todo.test" }},
		{"bad email", func(r *Request) { r.User = "alex" }},
		{"no description", func(r *Request) { r.Task.Description = "" }},
		{"unknown type", func(r *Request) { r.Type = "cookie" }},
		{"destination on a bearer request H-ISS-4", func(r *Request) { r.Destination = svcOrigin + "/x" }},
		{"destination over http", func(r *Request) { r.Type = pass.BrowserSession; r.Destination = "http://todo.test/x" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.mod(&r)
			if _, err := c.Acquire(context.Background(), r); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("err = %v, want ErrInvalidRequest", err)
			}
		})
	}
	if n := len(f.urls()); n != 0 {
		t.Errorf("%d calls made for invalid requests", n)
	}
}

// ATT-3: a harness attestation provider gets the holder key.
func TestHarnessAttestationProvider(t *testing.T) {
	f := newFake(t)
	vendor, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := f.client(Config{Attestation: func(_ context.Context, k *dpop.Key) (string, error) {
		return vendor.HarnessAttestation("https://vendor.test", harnessID, k.PublicJSON(), time.Hour, t0)
	}})
	req := bearerRequest()
	req.NoTaskAttestation = true
	if _, err := c.Acquire(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	ir := f.issuanceBody(authSvc)
	if ir.Harness.Attestation == nil || ir.Task.Attestation != nil {
		t.Fatalf("attestation %+v, task attestation %+v", ir.Harness.Attestation, ir.Task.Attestation)
	}
	cnf := claimsOf(t, ir.Harness.Attestation.JWT)["cnf"].(map[string]any)["jwk"]
	if !dpop.SameKey(json.RawMessage(mustJSON(cnf)), ir.Harness.Cnf.JWK) {
		t.Error("attestation cnf.jwk differs from harness.cnf.jwk (ATT-3)")
	}
}

func TestNewValidates(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"no harness id", Config{}},
		{"poll floor H-POLL-5", Config{HarnessID: "h", MinPoll: 50 * time.Millisecond}},
		{"max below min", Config{HarnessID: "h", MinPoll: time.Second, MaxPoll: 500 * time.Millisecond}},
		{"preferred not a URL", Config{HarnessID: "h", PreferredAuthority: "idp"}},
		{"negative retry wait", Config{HarnessID: "h", MaxRetryWait: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Discovery = &discovery.Client{}
			if _, err := New(tt.cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

// G-27: endpoint URLs come from third-party documents, so by default the
// Harness refuses to connect to non-public addresses (here, the loopback
// fake Service's resolve endpoint), and nothing is sent.
func TestPrivateAddressesRefused(t *testing.T) {
	f := newFake(t)
	dc := f.net.DiscoveryConfig()
	dc.HTTPClient = f.httpClient()
	d, err := discovery.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	// The test network's client maps names with its own dialer, which is
	// refused without the switch (review Low 1b), since a tunnel's looks
	// the same; a guarded client is sent to the hosts' loopback addresses
	// as DNS would.
	if _, err := New(Config{HarnessID: harnessID, HTTPClient: f.httpClient(), Discovery: d}); err == nil || !strings.Contains(err.Error(), "WrapTransport") {
		t.Fatalf("New with the test network's dialer: err = %v, want a refusal naming WrapTransport", err)
	}
	c, err := New(Config{HarnessID: harnessID, HTTPClient: f.net.GuardedClient(), WrapTransport: f.net.RouteToLoopback, Discovery: d})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Acquire(context.Background(), bearerRequest())
	if !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("err = %v, want ErrForbiddenAddress", err)
	}
	if n := len(f.callsTo(svcOrigin + "/resolve")); n != 0 {
		t.Errorf("the resolve endpoint received %d requests", n)
	}
}

// G-37, H-POLL-4: a 429 whose Retry-After asks for more than
// Config.MaxRetryWait ends the polling with the error, as documented, instead
// of waiting up to 5 minutes and polling again, forever.
func TestG37_PollRetryAfterBeyondMaxRetryWait(t *testing.T) {
	f := newFake(t)
	f.status = func(w http.ResponseWriter, n int, _ *http.Request) {
		w.Header().Set("Retry-After", "3600")
		writeErr(w, 429, pass.CodeRateLimited)
	}
	c, rec := f.client(Config{MaxRetryWait: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec.onCall = func(n int) {
		if n >= 20 { // the unfixed loop never ends by itself
			cancel()
		}
	}
	g, err := c.Acquire(ctx, bearerRequest())
	var pe *pass.PeerError
	if g != nil || !errors.As(err, &pe) || pe.Code != pass.CodeRateLimited {
		t.Fatalf("Acquire = %v, %v; want the 429 rate_limited error", g, err)
	}
	if n := len(f.callsTo(authSvc + "/status/" + requestID)); n != 1 {
		t.Errorf("status GETs = %d, want 1", n)
	}
	for _, d := range rec.all() {
		if d > 10*time.Second {
			t.Errorf("waited %v, more than MaxRetryWait", d)
		}
	}
}
