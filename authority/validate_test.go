package authority_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// TestValidateRejects: A-VAL-1..7, A-VAL-12, G-1, G-20 — every refusal is
// structured and leaves the pass redeemable by its Service.
func TestValidateRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	other := deploy.NewTestService(e.net, otherHost, e.auth.ConfigurationURL(), e.clock.Now)
	value, _ := e.approvedPass(e.newHarness())
	body := pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}}
	url := e.base + "/validate"
	post := func(bearer string, b any) response {
		h := http.Header{}
		if bearer != "" {
			h.Set("Authorization", "Bearer "+bearer)
		}
		return e.do(http.MethodPost, url, b, h)
	}
	stranger, _ := dpop.GenerateKey("ES256")
	signed := func(k *dpop.Key, iss, aud string, at time.Time) string {
		tok, err := assertion.Sign(k, iss, aud, 0, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := e.clock.Now()
	for _, tc := range []struct {
		name   string
		resp   func() response
		status int
		code   pass.Code
	}{
		{"A-VAL-1 no assertion", func() response { return post("", body) }, 401, pass.CodeInvalidAssertion},
		{"A-VAL-1 garbage assertion", func() response { return post("not.a.jwt", body) }, 401, pass.CodeInvalidAssertion},
		{"A-VAL-2 key not in the Service JWKS", func() response { return post(signed(stranger, e.svc.Origin, authID, now), body) }, 401, pass.CodeInvalidAssertion},
		{"A-VAL-3 expired", func() response {
			return post(signed(e.svc.Keys.Current(), e.svc.Origin, authID, now.Add(-5*time.Minute)), body)
		}, 401, pass.CodeInvalidAssertion},
		{"A-VAL-3 other audience", func() response {
			return post(signed(e.svc.Keys.Current(), e.svc.Origin, "https://idp.other.test", now), body)
		}, 401, pass.CodeInvalidAssertion},
		{"A-VAL-3 undiscoverable issuer", func() response {
			return post(signed(e.svc.Keys.Current(), "https://nowhere.test", authID, now), body)
		}, 401, pass.CodeInvalidAssertion},
		{"A-VAL-3 issuer with a path", func() response {
			return post(signed(e.svc.Keys.Current(), e.svc.Origin+"/x", authID, now), body)
		}, 401, pass.CodeInvalidAssertion},
		{"A-VAL-4 empty body", func() response { return post(e.svc.Assertion(authID), map[string]any{}) }, 400, pass.CodeInvalidRequest},
		{"A-VAL-5 unknown pass", func() response {
			return post(e.svc.Assertion(authID), pass.ValidationRequest{AgentPass: pass.PassValue{Value: "ap_unknown"}})
		}, 404, pass.CodeAgentPassInvalid},
		{"A-VAL-7 G-1 wrong Service", func() response { return post(other.Assertion(authID), body) }, 403, pass.CodeAudienceMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.resp(), tc.status, tc.code)
		})
	}
	// None of the above consumed the pass.
	r, v := e.validate(e.svc, value)
	if v == nil {
		t.Fatalf("validate after refusals: %d %s", r.status, r.body)
	}
	// A-VAL-6: a second validation is 409; the wrong Service still 403.
	wantError(t, toResp(e.validate(e.svc, value)), 409, pass.CodeAgentPassConsumed)
	wantError(t, toResp(e.validate(other, value)), 403, pass.CodeAudienceMismatch)
	// A-VAL-6: after the pass TTL, 410.
	late, _ := e.approvedPass(e.newHarness())
	e.clock.Advance((5 * time.Minute))
	wantError(t, toResp(e.validate(e.svc, late)), 410, pass.CodeAgentPassExpired)
}

// TestValidateRace: A-VAL-8 — 20 parallel validations of one pass through
// one Authority: exactly one 200, the others 409.
func TestValidateRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	value, _ := e.approvedPass(e.newHarness())
	var ok, conflict atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := e.svc.Post(e.net.Client(), e.base+"/validate", authID, pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}})
			switch {
			case err != nil:
				t.Error(err)
			case status == 200:
				ok.Add(1)
			case status == 409:
				conflict.Add(1)
			default:
				t.Errorf("validate: %d %s", status, body)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || conflict.Load() != 19 {
		t.Fatalf("200: %d, 409: %d", ok.Load(), conflict.Load())
	}
}

// TestAuditLog: item 10 — issuance, validation, checks, closes and
// revocations are logged with the attribute keys of the brief, and no pass
// value, assertion or full request id ever reaches the log.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	h := e.newHarness()
	value, st := e.approvedPass(h)
	_, v := e.validate(e.svc, value)
	if v == nil {
		t.Fatal("validate failed")
	}
	e.validate(e.svc, value) // a refusal is logged too
	e.check(e.svc, v.AuthorizationID)
	if _, err := e.auth.Revoke(ctx, v.AuthorizationID, "admin@corp.test", "test"); err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	for _, secret := range []string{value, st.ID, e.svc.Assertion(authID)[:40], h.req.Task.Attestation.JWT[:40]} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains a secret %q", secret[:10])
		}
	}
	for _, want := range []string{
		`"msg":"agentpass issuance"`, `"msg":"agentpass validation"`, `"msg":"agentpass authorization check"`, `"msg":"agentpass revoke"`,
		`"user":"alex@corp.test"`, `"agent":"claude-code"`, `"service":"https://todo.test"`, `"task":"task-1"`,
		`"authorization_id":"` + v.AuthorizationID + `"`, `"outcome":"ok"`, `"outcome":"rejected"`, `"code":"agentpass_consumed"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if bytes.Count([]byte(logs), []byte("\n")) < 5 {
		t.Errorf("too few log lines:\n%s", logs)
	}
}

// TestAssertionReplay: a captured Service assertion cannot be used twice
// (G-8: every assertion of our Services carries a fresh jti). The replayed
// call consumes nothing; a fresh assertion validates the pass.
func TestAssertionReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	first, _ := e.approvedPass(e.newHarness())
	second, _ := e.approvedPass(e.newHarness())
	tok := e.svc.Assertion(authID)
	call := func(value string) response {
		h := http.Header{}
		h.Set("Authorization", "Bearer "+tok)
		return e.do(http.MethodPost, e.base+"/validate", pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}}, h)
	}
	if r := call(first); r.status != http.StatusOK {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	wantError(t, call(second), http.StatusUnauthorized, pass.CodeInvalidAssertion)
	if r, _ := e.validate(e.svc, second); r.status != http.StatusOK {
		t.Fatalf("the replay consumed the second pass: %d %s", r.status, r.body)
	}
}
