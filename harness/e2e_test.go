package harness_test

// End-to-end tests against real Authorities (package authority) and a real
// Service (package service) on a loopback network with DNS and TLS.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

const e2eHarness = "e2e-harness"

func newClient(t *testing.T, e *e2e.Env, mod func(*harness.Config)) *harness.Client {
	t.Helper()
	cfg := harness.Config{
		HarnessID:  e2eHarness,
		HTTPClient: e.Client,
		Discovery:  e.Discovery(t),
		Now:        e.Clock.Now,
		MinPoll:    (100 * time.Millisecond),
		// The network is on loopback.
		InsecureAllowPrivateNetworks: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := harness.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func task(user string) harness.Request {
	return harness.Request{
		Service: e2e.AppOrigin,
		User:    user,
		Task:    pass.Task{Description: "Triage my open tickets"},
	}
}

// whoami calls the application API with the token and decodes its answer.
func whoami(t *testing.T, e *e2e.Env, tok *harness.Token, method string) (map[string]any, error) {
	t.Helper()
	req, _ := http.NewRequest(method, e2e.AppOrigin+"/api/tickets", nil)
	resp, err := tok.HTTPClient(e.Client).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := harness.CheckResponse(resp); err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// H-RES-3, H-RES-4, H-RES-5, H-ISS-*, HB-*, TATT-13, H-RED-3..10: each
// resolution branch, from discovery to an API call with the token.
func TestE2EBranches(t *testing.T) {
	tests := []struct {
		name      string
		user      string
		service   func(*service.Config)
		chooser   bool
		wantAuth  string
		wantTrust pass.TrustMode
	}{
		{name: "enterprise", user: e2e.EnterpriseUser, wantAuth: e2e.EnterpriseID},
		{name: "service authority", user: e2e.SoloUser, service: func(c *service.Config) { c.AuthorityChoice = service.PreferServiceAuthority }, wantAuth: e2e.ServiceAuthID},
		{name: "federated with chooser", user: e2e.SoloUser, service: func(c *service.Config) { c.ServiceAuthority = nil }, chooser: true, wantAuth: e2e.Federated2ID},
		{name: "service and federated offered together G-36", user: e2e.SoloUser, service: func(c *service.Config) { c.AuthorityChoice = service.OfferServiceAndFederated }, chooser: true, wantAuth: e2e.Federated2ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e2e.New(t, e2e.Options{Service: tt.service})
			var offered []pass.AuthorityRef
			c := newClient(t, e, func(cfg *harness.Config) {
				if tt.chooser {
					cfg.ChooseAuthority = func(_ context.Context, opts []pass.AuthorityRef) (pass.AuthorityRef, error) {
						offered = opts
						return pass.AuthorityRef{Authority: e2e.Federated2ID}, nil
					}
				}
			})
			ctx := context.Background()
			g, err := c.Acquire(ctx, task(tt.user))
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			if tt.chooser && len(offered) < 2 {
				t.Errorf("chooser offered %v, want the federated options", offered)
			}
			if g.Authority != tt.wantAuth {
				t.Errorf("authority = %s, want %s", g.Authority, tt.wantAuth)
			}
			tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
			if err != nil {
				t.Fatalf("RedeemBearerToken: %v", err)
			}
			got, err := whoami(t, e, tok, http.MethodGet)
			if err != nil {
				t.Fatalf("API call: %v", err)
			}
			if got["user"] != tt.user || got["agent"] != e2eHarness {
				t.Errorf("API sees %v", got)
			}
			// TATT-12 seen from the Authority: the task attestation verified.
			auths, err := e.Authority(tt.wantAuth).Authorizations(ctx, authority.ListOptions{Now: e.Clock.Now()})
			if err != nil || len(auths) != 1 {
				t.Fatalf("authorizations = %v, %v", auths, err)
			}
			if a := auths[0]; !a.TaskAttested || a.HarnessID != e2eHarness || a.TaskID != g.Task.ID || !dpop.SameKey(a.Cnf, g.Key.PublicJSON()) {
				t.Errorf("authorization = %+v", a)
			}
		})
	}
}

// Without a chooser, federated options are an error listing them, never a
// silent pick; the Harness then asks again with the person's choice.
func TestE2EFederatedChoiceRequired(t *testing.T) {
	e := e2e.New(t, e2e.Options{Service: func(c *service.Config) { c.ServiceAuthority = nil }})
	c := newClient(t, e, nil)
	ctx := context.Background()
	_, err := c.Acquire(ctx, task(e2e.SoloUser))
	var ce *harness.ChoiceRequiredError
	if !errors.As(err, &ce) || len(ce.Options) != 2 {
		t.Fatalf("err = %v, want *ChoiceRequiredError with two options", err)
	}
	req := task(e2e.SoloUser)
	req.Authority = ce.Options[0].Authority
	g, err := c.Acquire(ctx, req)
	if err != nil || g.Authority != ce.Options[0].Authority {
		t.Fatalf("Acquire with the chosen authority: %v, %v", g, err)
	}
}

// §4.2: "none" and a broken enterprise configuration are refusals of the
// Service; no Authority is asked.
func TestE2EResolutionRefused(t *testing.T) {
	for _, tt := range []struct {
		user string
		is   error
	}{
		{e2e.NoneUser, pass.ErrForbidden},
		{e2e.BrokenUser, pass.ErrUnavailable},
	} {
		t.Run(tt.user, func(t *testing.T) {
			e := e2e.New(t, e2e.Options{})
			c := newClient(t, e, nil)
			_, err := c.Acquire(context.Background(), task(tt.user))
			if !errors.Is(err, harness.ErrResolution) || !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want ErrResolution and %v", err, tt.is)
			}
		})
	}
}

// Denied and canceled decisions end the request with typed errors.
func TestE2EDenied(t *testing.T) {
	e := e2e.New(t, e2e.Options{Approver: authority.ApproverFunc(func(context.Context, *authority.Request) (authority.Decision, error) {
		return authority.Decision{Outcome: authority.Deny, Reason: "no agents on Fridays"}, nil
	})})
	c := newClient(t, e, nil)
	_, err := c.Acquire(context.Background(), task(e2e.EnterpriseUser))
	var d *harness.DeniedError
	if !errors.As(err, &d) || !errors.Is(err, harness.ErrDenied) || d.Reason != "no agents on Fridays" {
		t.Fatalf("err = %v, want *DeniedError with the reason", err)
	}
}

// manual returns a network whose Authorities leave every request pending,
// and a client whose progress events go to onPending.
func manual(t *testing.T, onPending func(e *e2e.Env, p harness.Progress)) (*e2e.Env, *harness.Client) {
	e := e2e.New(t, e2e.Options{Approver: authority.Manual{}})
	c := newClient(t, e, func(cfg *harness.Config) {
		cfg.Progress = func(p harness.Progress) {
			if p.Event == harness.EventPending {
				onPending(e, p)
			}
		}
	})
	return e, c
}

// H-POLL-3: pending, then approved by a person; the Harness sees the
// approval page link while it waits.
func TestE2EPendingThenHumanApproval(t *testing.T) {
	var mu sync.Mutex
	polls := 0
	var approvalURL string
	e := e2e.New(t, e2e.Options{Approver: authority.Manual{}})
	c := newClient(t, e, func(cfg *harness.Config) {
		cfg.Progress = func(p harness.Progress) {
			mu.Lock()
			defer mu.Unlock()
			switch p.Event {
			case harness.EventRequestCreated:
				approvalURL = p.ApprovalURL
			case harness.EventPending:
				polls++
				if polls == 1 { // a person approves while the Harness waits
					if _, err := e.Enterprise.Decide(context.Background(), pendingMission(e.Enterprise), authority.Decision{
						Outcome: authority.Approve, Scope: pass.Scope{"tickets:read"}, DecidedBy: "human:manager@corp.test",
					}); err != nil {
						t.Errorf("Decide: %v", err)
					}
				}
			}
		}
	})
	ctx := context.Background()
	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if polls != 1 {
		t.Errorf("pending events = %d, want 1 (a change of state, not one per poll)", polls)
	}
	if !strings.HasPrefix(approvalURL, e2e.EnterpriseID+"/approve/") {
		t.Errorf("approval link = %q", approvalURL)
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pass.Scope{"tickets:read"}, tok.Scope); diff != "" {
		t.Errorf("scope (-want +got):\n%s", diff)
	}
}

// A pending request that nobody decides expires: ErrExpired.
func TestE2EExpired(t *testing.T) {
	_, c := manual(t, func(e *e2e.Env, p harness.Progress) { e.Clock.Advance((10 * time.Minute) + time.Second) })
	_, err := c.Acquire(context.Background(), task(e2e.EnterpriseUser))
	if !errors.Is(err, harness.ErrExpired) {
		t.Fatalf("err = %v, want ErrExpired", err)
	}
}

// Canceling at the Authority: ErrCanceled.
func TestE2ECanceled(t *testing.T) {
	_, c := manual(t, func(e *e2e.Env, p harness.Progress) {
		_, _ = e.Enterprise.Decide(context.Background(), pendingMission(e.Enterprise), authority.Decision{Outcome: authority.Cancel})
	})
	_, err := c.Acquire(context.Background(), task(e2e.EnterpriseUser))
	if !errors.Is(err, harness.ErrCanceled) {
		t.Fatalf("err = %v, want ErrCanceled", err)
	}
}

// Cancellation mid-poll stops the Harness with the context's error.
func TestE2ECancellationMidPoll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, c := manual(t, func(*e2e.Env, harness.Progress) { cancel() })
	_, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// H-RED-6: the requested scope narrows the token; an API route needing more
// answers 403, a typed error.
func TestE2ERequestedScopeNarrowed(t *testing.T) {
	e := e2e.New(t, e2e.Options{})
	c := newClient(t, e, nil)
	ctx := context.Background()
	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{RequestedScope: pass.Scope{"tickets:read"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pass.Scope{"tickets:read"}, tok.Scope); diff != "" {
		t.Errorf("scope (-want +got):\n%s", diff)
	}
	if _, err := whoami(t, e, tok, http.MethodGet); err != nil {
		t.Errorf("read: %v", err)
	}
	_, err = whoami(t, e, tok, http.MethodPost)
	var ae *harness.APIError
	if !errors.As(err, &ae) || !errors.Is(err, harness.ErrForbidden) || !errors.Is(err, pass.ErrScope) {
		t.Fatalf("write with a read token: %v, want 403 insufficient_scope", err)
	}
}

// H-POLL-7, G-37: the Service refuses a replayed pass with 409; the error
// says so and is terminal.
func TestE2EReplayedPassRejected(t *testing.T) {
	e := e2e.New(t, e2e.Options{})
	c := newClient(t, e, nil)
	ctx := context.Background()
	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{}); !errors.Is(err, harness.ErrGrantUsed) {
		t.Fatalf("client-side reuse: %v, want ErrGrantUsed", err)
	}
	harness.ForgetUse(g) // present the same pass again, as a replaying attacker would
	_, err = c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	var re *harness.RedemptionError
	if !errors.As(err, &re) || !errors.Is(err, pass.ErrConsumed) || re.Err.Status != http.StatusConflict {
		t.Fatalf("replay: %v, want a 409 RedemptionError", err)
	}
}

// HB-7: a proof signed by another key than harness.cnf is rejected, and the
// pass cannot be redeemed by whoever holds only the pass.
func TestE2EWrongKeyRejected(t *testing.T) {
	e := e2e.New(t, e2e.Options{})
	c := newClient(t, e, nil)
	ctx := context.Background()
	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	other, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	g.Key = other
	_, err = c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	var re *harness.RedemptionError
	if !errors.As(err, &re) || !errors.Is(err, pass.ErrUnauthenticated) || re.Err.Status != http.StatusUnauthorized {
		t.Fatalf("wrong key: %v, want a 401 RedemptionError", err)
	}
}

// DPoP-bound tokens end to end, and a revoked delegation surfaces as a 401
// typed error at the next authorization check (no silent re-acquire).
func TestE2EDPoPAndRevocation(t *testing.T) {
	e := e2e.New(t, e2e.Options{})
	var mu sync.Mutex
	acquires := 0
	c := newClient(t, e, func(cfg *harness.Config) {
		cfg.Progress = func(p harness.Progress) {
			if p.Event == harness.EventRequestCreated {
				mu.Lock()
				acquires++
				mu.Unlock()
			}
		}
	})
	ctx := context.Background()
	g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{DPoP: true})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Type != "DPoP" {
		t.Fatalf("token type %s, want DPoP", tok.Type)
	}
	if _, err := whoami(t, e, tok, http.MethodGet); err != nil {
		t.Fatalf("DPoP API call: %v", err)
	}
	// The bare token without the DPoP proof is refused.
	bare, _ := harness.NewToken(e2e.AppOrigin, tok.Value(), "Bearer", nil, e.Clock.Now)
	if _, err := whoami(t, e, bare, http.MethodGet); !errors.Is(err, harness.ErrTokenRejected) {
		t.Errorf("DPoP token used as a bearer token: %v, want ErrTokenRejected", err)
	}

	auths, err := e.Enterprise.Authorizations(ctx, authority.ListOptions{Now: e.Clock.Now()})
	if err != nil || len(auths) != 1 {
		t.Fatalf("authorizations: %v, %v", auths, err)
	}
	if _, err := e.Enterprise.Revoke(ctx, auths[0].ID, "admin@corp.test", "laptop lost"); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance((30 * time.Second) + time.Second)
	_, err = whoami(t, e, tok, http.MethodGet)
	if !errors.Is(err, harness.ErrTokenRejected) || !errors.Is(err, pass.ErrRevoked) {
		t.Fatalf("after revocation: %v, want ErrTokenRejected / delegation_revoked", err)
	}
	if acquires != 1 {
		t.Errorf("acquires = %d, want 1 (no silent re-acquire)", acquires)
	}
}

// TestE2EResolve: Resolve reports the branch and the Authorities on offer
// without creating any issuance request (H-DISC-1, H-RES-1..5), and a
// refusal is an ErrResolution error like Acquire's (S-RES-7).
func TestE2EResolve(t *testing.T) {
	e := e2e.New(t, e2e.Options{Service: func(c *service.Config) { c.ServiceAuthority = nil }})
	c := newClient(t, e, nil)
	ctx := context.Background()
	r, err := c.Resolve(ctx, e2e.AppOrigin, e2e.EnterpriseUser)
	if err != nil || r.Branch != harness.BranchEnterprise || len(r.Options) != 1 || r.Options[0].Authority != e2e.EnterpriseID {
		t.Fatalf("enterprise user: %+v, %v", r, err)
	}
	r, err = c.Resolve(ctx, e2e.AppOrigin, e2e.SoloUser)
	if err != nil || r.Branch != harness.BranchFederated || len(r.Options) != 2 {
		t.Fatalf("user without a record: %+v, %v", r, err)
	}
	if _, err := c.Resolve(ctx, e2e.AppOrigin, e2e.NoneUser); !errors.Is(err, harness.ErrResolution) || !errors.Is(err, pass.ErrForbidden) {
		t.Fatalf("none domain: %v", err)
	}
	if _, err := c.Resolve(ctx, "http://app.test", e2e.EnterpriseUser); !errors.Is(err, harness.ErrInvalidRequest) {
		t.Fatalf("http origin: %v", err)
	}
	for _, id := range []string{e2e.EnterpriseID, e2e.FederatedID, e2e.Federated2ID} {
		if p, _ := e.Authority(id).Pending(ctx, authority.ListOptions{Now: e.Clock.Now()}); len(p) != 0 {
			t.Fatalf("Resolve created a request at %s", id)
		}
	}
}

// pendingMission returns the mission id of the oldest pending request at a:
// operators decide by mission id, never by the Harness's request id.
func pendingMission(a *authority.Authority) string {
	l, err := a.Pending(context.Background(), authority.ListOptions{Limit: 1})
	if err != nil || len(l) == 0 {
		return ""
	}
	return l[0].MissionID
}
