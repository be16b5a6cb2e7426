package service_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/discovery/dnstest"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// scenarios publishes one e-mail domain per row of the precedence table:
//
//	corp.test      Enterprise Authority idp.corp.test, policy absent (true)
//	strict.test    Enterprise Authority idp.strict.test, allow_service_authorities false
//	none.test      TXT "none"
//	broken.test    TXT -> a configuration URL answering 404
//	badcfg.test    TXT -> a configuration with an unknown major version
//	garbage.test   TXT "garbage" (invalid record)
//	twourls.test   two valid URLs (invalid record)
//	servfail.test  SERVFAIL
//	mode.test      TXT -> a configuration with trust_mode "federated"
//	nodata.test    NOERROR without TXT (no record)
//	free.test      NXDOMAIN (no record)
type scenarios struct {
	strict *fakeAuthority
	bad    *fakeAuthority
}

func (e *env) scenarios() *scenarios {
	s := &scenarios{}
	s.strict = e.newAuthority("idp.strict.test", pass.TrustEnterprise)
	no := false
	s.strict.setConfig(func(c *pass.AuthorityConfiguration) {
		c.Policy = &pass.AuthorityPolicy{AllowServiceAuthorities: &no}
	})
	s.bad = e.newAuthority("idp.bad.test", pass.TrustEnterprise)
	s.bad.setConfig(func(c *pass.AuthorityConfiguration) { c.Version = "9.0" })
	e.net.PublishEnterprise("strict.test", s.strict.configURL)
	e.net.PublishEnterprise("none.test", "none")
	e.net.PublishEnterprise("broken.test", e.idp.origin+"/missing")
	e.net.PublishEnterprise("badcfg.test", s.bad.configURL)
	e.net.PublishEnterprise("garbage.test", "garbage")
	e.net.SetTXT("_agentpass.twourls.test", e.idp.configURL, s.strict.configURL)
	e.net.SetTXT("_agentpass.servfail.test", e.idp.configURL)
	e.net.DNS.SetFault("_agentpass.servfail.test", dnstest.FaultServFail)
	e.net.PublishEnterprise("mode.test", e.fed.configURL)
	e.net.DNS.SetNoData("_agentpass.nodata.test")
	return s
}

// The precedence table of §4.2, row by row (S-RES-1..16, G-10, G-11, G-31,
// G-36, je.authority-resolution-followup).
func TestResolutionPrecedence(t *testing.T) {
	noSA := func(c *service.Config) { c.ServiceAuthority = nil }
	noFed := func(c *service.Config) { c.TrustedFederated = nil }
	prefer := func(c *service.Config) { c.AuthorityChoice = service.PreferServiceAuthority }
	both := func(c *service.Config) { c.AuthorityChoice = service.OfferServiceAndFederated }
	require := func(c *service.Config) { c.AuthorityChoice = service.RequireServiceAuthority }
	onlyFed2 := func(c *service.Config) {
		c.FederatedPolicy = func(_ context.Context, email string, opts []pass.AuthorityRef) []pass.AuthorityRef {
			// Narrow to fed2, and try to sneak in an untrusted entry.
			return []pass.AuthorityRef{opts[1], {Authority: "https://rogue.test", AuthorityConfigurationURL: "https://rogue.test/ap"}}
		}
	}
	type want struct {
		status int
		code   pass.Code
		ea     string // authority of enterprise_authority
		sa     bool   // service_authority present
		fed    []string
	}
	tests := []struct {
		name   string
		ids    string
		mutate []func(*service.Config)
		email  string
		want   want
	}{
		{"enterprise, no service authority", "S-RES-4", []func(*service.Config){noSA}, "alex@corp.test", want{status: 200, ea: "https://idp.corp.test"}},
		{"enterprise, service authority not preferred", "S-RES-6 G-36", nil, "alex@corp.test", want{status: 200, ea: "https://idp.corp.test"}},
		{"enterprise allows, service authority preferred", "S-RES-6", []func(*service.Config){prefer}, "alex@corp.test", want{status: 200, sa: true}},
		{"enterprise forbids service authority", "S-RES-5", []func(*service.Config){prefer}, "alex@strict.test", want{status: 200, ea: "https://idp.strict.test"}},
		{"enterprise forbids, service requires its own", "G-36", []func(*service.Config){require}, "alex@strict.test", want{status: 403, code: pass.CodeAgentsUnsupported}},
		{"enterprise allows, service requires its own", "G-36", []func(*service.Config){require}, "alex@corp.test", want{status: 200, sa: true}},
		{"enterprise never yields federated", "S-RES-12", []func(*service.Config){noSA}, "alex@corp.test", want{status: 200, ea: "https://idp.corp.test"}},
		{"none", "S-RES-7 X-DNS-7", nil, "alex@none.test", want{status: 403, code: pass.CodeDelegationDisabled}},
		{"configuration 404", "S-RES-8", nil, "alex@broken.test", want{status: 502, code: pass.CodeDiscoveryFailed}},
		{"configuration unknown major", "S-RES-8 X-VER-1", nil, "alex@badcfg.test", want{status: 502, code: pass.CodeDiscoveryFailed}},
		{"invalid record", "G-11 X-DNS-5", nil, "alex@garbage.test", want{status: 502, code: pass.CodeDiscoveryFailed}},
		{"two valid records", "X-DNS-8", nil, "alex@twourls.test", want{status: 502, code: pass.CodeDiscoveryFailed}},
		{"SERVFAIL", "G-10", nil, "alex@servfail.test", want{status: 502, code: pass.CodeDiscoveryFailed}},
		{"trust_mode not enterprise", "G-31", nil, "alex@mode.test", want{status: 502, code: pass.CodeDiscoveryFailed}},
		{"no record, service authority only", "S-RES-9", []func(*service.Config){noFed}, "alex@free.test", want{status: 200, sa: true}},
		{"no record (NODATA), service authority only", "S-RES-9", []func(*service.Config){noFed}, "alex@nodata.test", want{status: 200, sa: true}},
		{"no record, service authority preferred", "S-RES-9", []func(*service.Config){prefer}, "alex@free.test", want{status: 200, sa: true}},
		{"no record, federated over service authority", "S-RES-10", nil, "alex@free.test", want{status: 200, fed: []string{"https://fed.test", "https://fed2.test"}}},
		{"no record, federated only", "S-RES-10", []func(*service.Config){noSA}, "alex@free.test", want{status: 200, fed: []string{"https://fed.test", "https://fed2.test"}}},
		{"no record, policy narrows federated", "S-RES-10 S-RES-14", []func(*service.Config){noSA, onlyFed2}, "alex@free.test", want{status: 200, fed: []string{"https://fed2.test"}}},
		{"no record, both offered", "je.authority-resolution-followup", []func(*service.Config){both}, "alex@free.test", want{status: 200, sa: true, fed: []string{"https://fed.test", "https://fed2.test"}}},
		{"no record, service authority required over an offer of both", "G-36", []func(*service.Config){both, require}, "alex@free.test", want{status: 200, sa: true}},
		{"no record, nothing configured", "S-RES-11", []func(*service.Config){noSA, noFed}, "alex@free.test", want{status: 404, code: pass.CodeNoAuthority}},
		{"no record, policy removes every federated", "S-RES-11", []func(*service.Config){noSA, func(c *service.Config) {
			c.FederatedPolicy = func(context.Context, string, []pass.AuthorityRef) []pass.AuthorityRef { return nil }
		}}, "alex@free.test", want{status: 404, code: pass.CodeNoAuthority}},
		{"malformed email", "S-RES-1", nil, "nope", want{status: 400, code: pass.CodeInvalidRequest}},
		{"IP literal domain", "G-25", nil, "alex@[127.0.0.1]", want{status: 400, code: pass.CodeInvalidRequest}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *service.Config) {
				for _, m := range tt.mutate {
					m(c)
				}
			})
			e.scenarios()
			r := e.resolve(tt.email)
			if r.status != tt.want.status {
				t.Fatalf("%s: status %d, want %d: %s", tt.ids, r.status, tt.want.status, r.body)
			}
			if r.status != http.StatusOK {
				validError(t, r)
				if got := r.errorCode(); got != tt.want.code {
					t.Errorf("%s: code %s, want %s", tt.ids, got, tt.want.code)
				}
				var body map[string]any
				r.decode(t, &body)
				for _, k := range []string{"enterprise_authority", "service_authority", "trusted_federated_authorities"} {
					if _, ok := body[k]; ok {
						t.Errorf("%s: a rejection carries %s", tt.ids, k)
					}
				}
				return
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
			}
			var resp pass.ResolutionResponse
			if err := pass.Decode(r.body, &resp); err != nil {
				t.Fatalf("%s: response invalid: %v: %s", tt.ids, err, r.body)
			}
			if !(tt.want.sa && len(tt.want.fed) > 0) { // the two-field extension is not in the v0.1 schema
				validJSON(t, r.body, "service-authority-resolution.schema.json", "response") // S-RES-13
			}
			if tt.want.ea != "" {
				wantEA := &pass.AuthorityRef{Authority: tt.want.ea, AuthorityConfigurationURL: tt.want.ea + "/ap"}
				if diff := cmp.Diff(wantEA, resp.EnterpriseAuthority); diff != "" {
					t.Errorf("%s: enterprise_authority (-want +got):\n%s", tt.ids, diff)
				}
			} else if resp.EnterpriseAuthority != nil {
				t.Errorf("%s: unexpected enterprise_authority %+v", tt.ids, resp.EnterpriseAuthority)
			}
			if tt.want.sa {
				if resp.ServiceAuthority == nil || *resp.ServiceAuthority != *e.cfg.ServiceAuthority {
					t.Errorf("%s: service_authority = %+v, want %+v", tt.ids, resp.ServiceAuthority, e.cfg.ServiceAuthority)
				}
			} else if resp.ServiceAuthority != nil {
				t.Errorf("%s: unexpected service_authority", tt.ids)
			}
			var fed []string
			for _, f := range resp.TrustedFederatedAuthorities {
				fed = append(fed, f.Authority)
				if !slices.Contains(e.cfg.TrustedFederated, f) { // S-RES-10, S-RES-14
					t.Errorf("%s: federated entry %+v is not from the configuration", tt.ids, f)
				}
			}
			if diff := cmp.Diff(tt.want.fed, fed); diff != "" {
				t.Errorf("%s: trusted_federated_authorities (-want +got):\n%s", tt.ids, diff)
			}
		})
	}
}

// S-RES-3: enterprise discovery runs for the exact domain of the e-mail
// (not its parent), with IDNA and case folded (S-RES-2, G-25).
func TestResolutionQueriesExactDomain(t *testing.T) {
	e := newEnv(t, nil)
	e.net.PublishEnterprise("sub.corp.test", e.idp.configURL)
	r := e.resolve("Alex@Sub.CORP.test")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if n := e.net.DNS.Queries("_agentpass.sub.corp.test"); n == 0 {
		t.Errorf("no query for _agentpass.sub.corp.test")
	}
}

// S-RES-1: bodies that are not a resolution request are refused.
func TestResolutionMalformed(t *testing.T) {
	e := newEnv(t, nil)
	url := e.svc.Configuration().Endpoints.ResolveAuthorities
	for _, body := range []string{`{}`, `{"user":{"email":"nope"}}`, `[]`, `{"user":`, `null`} {
		r := e.do(http.MethodPost, url, http.Header{"Content-Type": {"application/json"}}, stringsReader(body))
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", body, r.status)
			continue
		}
		validError(t, r)
	}
	if r := e.do(http.MethodPost, url, http.Header{"Content-Type": {"text/plain"}}, stringsReader(`{}`)); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: status %d, want 415", r.status)
	}
	if r := e.do(http.MethodGet, url, nil, nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", r.status)
	}
}
