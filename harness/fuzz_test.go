package harness

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// FuzzCheckResponse feeds hostile API error answers (body and
// WWW-Authenticate) to CheckResponse: it never panics, always returns an
// *APIError for statuses >= 400, and keeps the code and message bounded.
func FuzzCheckResponse(f *testing.F) {
	f.Add(401, `Bearer error="invalid_token"`, `{"error":{"code":"delegation_revoked","message":"revoked"}}`)
	f.Add(403, `DPoP algs="ES256", error=use_dpop_nonce`, `{"error":{}}`)
	f.Add(401, `error="`, "not json")
	f.Add(500, "", `{"error":{"code":"`+strings.Repeat("x", 2000)+`","message":"m"}}`)
	f.Fuzz(func(t *testing.T, status int, www, body string) {
		if status < 400 || status > 599 {
			status = 400 + (status%200+200)%200
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{"Www-Authenticate": {www}}, Body: io.NopCloser(strings.NewReader(body))}
		err := CheckResponse(resp)
		ae, ok := err.(*APIError)
		if !ok {
			t.Fatalf("CheckResponse(%d) = %v, want *APIError", status, err)
		}
		if len(ae.Message) > maxReasonLen || (ae.Err == nil && len(ae.Code) > 64) {
			t.Fatalf("unbounded code or message: %d, %d", len(ae.Code), len(ae.Message))
		}
		_ = ae.Error()
	})
}

// FuzzRetryAfter: any header value yields a delay in [0, 24 h].
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "3", "-1", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := retryAfter(http.Header{"Retry-After": {v}}, t0)
		if d < 0 || d > 24*time.Hour {
			t.Fatalf("retryAfter(%q) = %v", v, d)
		}
	})
}

// FuzzResolution feeds arbitrary resolution answers through the shape check
// and the choice: a valid answer always yields at least one option from the
// answer, and nothing panics.
func FuzzResolution(f *testing.F) {
	f.Add(`{"enterprise_authority":{"authority":"https://a.test","authority_configuration_url":"https://a.test/c"}}`)
	f.Add(`{"service_authority":{"authority":"https://idp.test","authority_configuration_url":"https://idp.test/config"},"trusted_federated_authorities":[{"authority":"https://fed1.test","authority_configuration_url":"https://fed1.test/config"}]}`)
	f.Add(`{}`)
	f.Add(`{"trusted_federated_authorities":[]}`)
	scfg := &pass.ServiceConfiguration{Trust: pass.ServiceTrust{ServiceAuthority: &pass.AuthorityRef{Authority: authSvc, AuthorityConfigurationURL: authSvc + "/config"}, TrustedFederatedAuthorities: []pass.AuthorityRef{ref(authFed1), ref(authFed2)}}}
	f.Fuzz(func(t *testing.T, body string) {
		var res pass.ResolutionResponse
		if pass.Decode([]byte(body), &res) != nil {
			return
		}
		if checkOffered(&res, scfg, "https://todo.test/resolve") != nil {
			return
		}
		opts, branch := offered(&res)
		if len(opts) == 0 || branch == "" {
			t.Fatalf("valid answer %s gave no option", body)
		}
		if (branch == BranchEnterprise || branch == BranchService) && len(opts) != 1 {
			t.Fatalf("branch %s with %d options", branch, len(opts))
		}
	})
}
