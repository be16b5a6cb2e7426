package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/pass"
)

const roleAuthority = "authority"

func (r *runner) needAuthority(c *check) bool {
	if !r.auth.usable() {
		c.skipf("no usable Authority target")
		return false
	}
	return true
}

// needKit also needs the kit's Service, for validation calls.
func (r *runner) needKit(c *check) bool {
	if !r.needAuthority(c) {
		return false
	}
	if r.cfg.KitService == nil {
		c.skipf("needs Config.KitService, a Service the Authority can discover")
		return false
	}
	return true
}

// issuanceService is the Service origin the kit asks passes for when it
// tests the Authority: the Service under test when it trusts this
// Authority, else the kit's own Service.
func (r *runner) issuanceService() string {
	if r.svc.usable() && r.svcAuth.usable() && r.svcAuth.cfg.Authority == r.auth.cfg.Authority {
		return r.svc.cfg.Service.Origin
	}
	if r.cfg.KitService != nil {
		return r.cfg.KitService.origins[0]
	}
	return ""
}

// kitPass obtains a pass for the kit's Service at origin index i.
func (r *runner) kitPass(ctx context.Context, c *check, i int) *grant {
	g, err := r.acquire(ctx, c, r.auth, r.cfg.KitService.origins[i], pass.BearerToken)
	if err != nil {
		c.skipf("could not obtain a pass for the kit's Service: %v", err)
		return nil
	}
	return g
}

// assertionFor signs a Service assertion from the kit's Service at
// origin index i to the Authority under test.
func (r *runner) assertionFor(i int) string {
	k := r.cfg.KitService
	tok, _ := assertion.Sign(k.keys.Current(), k.origins[i], r.auth.cfg.Authority, 0, time.Now())
	return tok
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// validate calls the validation endpoint as the kit's Service i.
func (r *runner) validate(ctx context.Context, c *check, i int, value string) *answer {
	return c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Validate, bearer(r.assertionFor(i)), pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}})
}

func (r *runner) authorityChecks() []def {
	au := func(group, id, name string, level Level, expected string, fn func(context.Context, *check)) def {
		return def{role: roleAuthority, group: group, id: id, name: name, level: level, expected: expected, fn: fn}
	}
	defs := []def{
		au("configuration", "A-CFG-2", "configuration validates against authority-configuration.schema.json", Required,
			"§5.2, App. A: version, authority, trust_mode (enterprise, federated or service), jwks_uri and the four endpoints, https, issuance_status a template with {id}.",
			r.findAuthority),
		r.tlsCheck(roleAuthority, func() string {
			if r.auth == nil {
				return ""
			}
			return r.auth.configURL
		}),
		au("configuration", "X-DNS-11", "configuration carries Cache-Control with a bounded lifetime", Recommended,
			"§5.2.1: configuration endpoints SHOULD send an appropriate Cache-Control.",
			func(ctx context.Context, c *check) {
				if r.needAuthority(c) {
					checkCacheControl(c, r.auth.header)
				}
			}),
		au("configuration", "A-CFG-5", "jwks_uri serves public signing keys with kids", Required,
			"§4.3, §5.2: jwks_uri serves the keys that verify the Authority's assertions; G-6: public keys only, picked by kid.",
			func(ctx context.Context, c *check) {
				if r.needAuthority(c) {
					r.checkJWKS(ctx, c, r.auth.cfg.JWKSURI)
				}
			}),
		au("issuance", "A-ISS-1", "malformed issuance requests are refused", Required,
			"§5.3.1, App. A: type, service.origin, user.email, harness.id, task.id and task.description are required, type is browser_session or bearer_token, URLs are https (A-ISS-2); harness.cnf carries a public jwk (HB-2); attestation objects carry jwt (ATT-1, TATT-1).",
			r.badIssuance),
		au("issuance", "TATT-6", "task attestations that do not verify are refused", Required,
			"§3.1.3: the Authority verifies the task attestation with harness.cnf.jwk (TATT-6), task_id = task.id (TATT-7), the description hash (TATT-8), iss = harness.id (TATT-9), unexpired (TATT-10); any failure rejects the request (TATT-11); G-6: never alg none or HMAC.",
			r.badTaskAttestations),
		au("status", "A-STAT-1", "issuance and status answers follow issuance-status", Required,
			"§5.3: answers validate against issuance-status (A-ISS-7, A-STAT-1); approved answers carry agentpass (A-STAT-4); terminal states never change (A-STAT-2); pending answers SHOULD carry poll_after_ms (A-STAT-3) and the issuance answer SHOULD be 202 (A-ISS-6).",
			r.statusChecks),
		au("status", "A-STAT-5", "an unknown request id is refused", Required,
			"§5.3.2: an unknown id yields no status (404 suggested).",
			func(ctx context.Context, c *check) {
				if !r.needAuthority(c) {
					return
				}
				a := c.send(ctx, http.MethodGet, r.auth.cfg.StatusURL("conformance-unknown-"+r.runID), nil, nil)
				c.expectRefusal(a, "unknown id", 404)
			}),
		au("validation", "A-VAL-1", "validation refuses callers without a valid assertion and does not consume", Required,
			"§5.4.1: callers present Authorization: Bearer {assertion}, else 401 (A-VAL-1); a wrong aud is refused (A-VAL-3); neither consumes the pass, which then validates once (A-VAL-9 schema, A-VAL-6 single use).",
			r.validationBasics),
		au("validation", "A-VAL-5", "validation of an unknown or empty pass is refused", Required,
			"§5.4.1: the body carries a non-empty agentpass.value (A-VAL-4, 400 suggested); an unknown value is refused (A-VAL-5, 404 suggested).",
			func(ctx context.Context, c *check) {
				if !r.needKit(c) {
					return
				}
				c.expectRefusal(c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Validate, bearer(r.assertionFor(0)), map[string]any{}), "{}", 400)
				c.expectRefusal(r.validate(ctx, c, 0, "conformance-unknown-"+r.runID), "unknown value", 404)
			}),
		au("validation", "A-VAL-7", "the audience is checked before the pass is consumed", Required,
			"§5.4.1 steps 3–5: the authenticated Service must be the pass's audience (403 suggested), checked before consumption, so a wrong Service cannot burn someone else's pass (G-1).",
			r.audienceBeforeConsumption),
		au("validation", "A-VAL-8", "parallel validations of one pass: exactly one succeeds", Required,
			"§4.4, §5.4.1: consumption is atomic; of any number of validations of one pass at most one succeeds (409 suggested for the rest).",
			r.parallelValidation),
		au("jwt hygiene", "A-VAL-3", "validation refuses forged or ill-formed Service assertions", Required,
			"§5.4.1: the assertion is verified with the Service's JWKS found by Service discovery on iss, and expired or invalid assertions are refused; G-6: never alg none, never HMAC, never keys from jku/x5u/jwk headers, unknown crit refused. Judged against the answer for a good assertion on the same unknown pass, so nothing is consumed.",
			r.assertionHygiene),
		au("jwt hygiene", "G-7", "validation refuses assertions with excessive lifetime or a reused jti", Recommended,
			"G-7: exp − iat ≤ 300 s; G-8 and the hardening draft: a jti is accepted once (replayed here on an authorization check that succeeded).",
			r.assertionLifetimeReplay),
		au("available scopes", "A-SCOPE-1", "the Authority's call to available_scopes carries a valid assertion", Required,
			"§4.3: Authorization: Bearer with a JWS signed by a key of the Authority's jwks_uri, iss = its authority, aud = the Service origin, iat and exp (A-SCOPE-2); the body holds user.email and agent.id (A-SCOPE-4).",
			r.scopeCallChecks),
		au("authorization check", "A-AUTHZ-3", "authorization checks: answers, refusals and revocation", Required,
			"§5.5.1: {} is refused (A-AUTHZ-2), a caller without assertion is refused (A-AUTHZ-1), an unknown id is 404 (A-AUTHZ-5), an active delegation answers its scope (A-AUTHZ-3), and a revoked one exactly 404 (A-AUTHZ-4).",
			r.authorizationChecks),
		au("authorization check", "G-16", "another Service cannot check a delegation it did not redeem", Recommended,
			"G-16 (and the hardening draft je.tighten-auth-check): the Authority answers only the redeeming Service; others get 404.",
			r.foreignAuthorizationCheck),
	}
	return defs
}

// findAuthority locates and fetches the Authority under test.
func (r *runner) findAuthority(ctx context.Context, c *check) {
	switch {
	case r.cfg.AuthorityConfigURL != "":
		r.auth = r.fetchAuthority(ctx, c, r.cfg.AuthorityConfigURL)
	case r.cfg.AuthorityID != "" && r.svcAuth != nil && r.svcAuth.usable() && r.svcAuth.cfg.Authority == r.cfg.AuthorityID:
		r.auth = r.svcAuth
	case r.cfg.AuthorityID != "":
		domain, err := pass.EmailDomain(r.cfg.User)
		if err == nil {
			var u string
			u, err = r.disc.LookupEnterpriseTXT(ctx, domain)
			c.res.Exchanges = append(c.res.Exchanges, Exchange{Method: "DNS TXT", URL: "_agentpass." + domain, Response: u, Error: errString(err)})
			if err == nil {
				r.auth = r.fetchAuthority(ctx, c, u)
			}
		}
		if err != nil || !r.auth.usable() || r.auth.cfg.Authority != r.cfg.AuthorityID {
			r.auth = nil
			c.skipf("cannot find the configuration of %s: give its configuration URL", r.cfg.AuthorityID)
			return
		}
	case r.svcAuth.usable():
		r.auth = r.svcAuth
	default:
		c.skipf("no Authority target")
		return
	}
	if r.auth.raw == nil {
		c.failf("%v", r.auth.err)
		return
	}
	if err := r.sch.validate(r.auth.raw, "authority-configuration.schema.json", ""); err != nil {
		c.failf("%v", err)
	}
	if r.auth.err != nil {
		c.failf("%v", r.auth.err)
		return
	}
	if !strings.Contains(r.auth.cfg.Endpoints.IssuanceStatus, "{id}") {
		c.failf("issuance_status %q has no {id}", r.auth.cfg.Endpoints.IssuanceStatus)
	}
	c.got("%s (%s)", r.auth.cfg.Authority, r.auth.cfg.TrustMode)
}

// badIssuance sends issuance requests that must be refused.
func (r *runner) badIssuance(ctx context.Context, c *check) {
	if !r.needAuthority(c) {
		return
	}
	svc := r.issuanceService()
	if svc == "" {
		svc = "https://service.invalid"
	}
	_, good, err := r.issuanceRequest(pass.BearerToken, svc)
	if err != nil {
		c.failf("%v", err)
		return
	}
	raw, _ := json.Marshal(good)
	variant := func(mut func(m map[string]any)) map[string]any {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		mut(m)
		return m
	}
	obj := func(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }
	priv, _ := es256Key()
	var privJWK map[string]any
	if priv != nil {
		privJWK = publicJWK(priv)
		// A private member makes it a private key: it must never be sent.
		privJWK["d"] = b64([]byte("conformance-not-a-real-private-scalar!"))
	}
	cases := []struct {
		name string
		mut  func(m map[string]any)
	}{
		{"type missing", func(m map[string]any) { delete(m, "type") }},
		{`type "cookie"`, func(m map[string]any) { m["type"] = "cookie" }},
		{"service.origin missing", func(m map[string]any) { delete(obj(m, "service"), "origin") }},
		{"service.origin http://", func(m map[string]any) { obj(m, "service")["origin"] = "http://service.invalid" }},
		{"user.email missing", func(m map[string]any) { delete(obj(m, "user"), "email") }},
		{"harness.id missing", func(m map[string]any) { delete(obj(m, "harness"), "id") }},
		{"task.id missing", func(m map[string]any) { delete(obj(m, "task"), "id") }},
		{"task.description missing", func(m map[string]any) { delete(obj(m, "task"), "description") }},
		{"harness.cnf {} (HB-2)", func(m map[string]any) { obj(m, "harness")["cnf"] = map[string]any{} }},
		{"harness.cnf.jwk with a private member (G-6)", func(m map[string]any) { obj(m, "harness")["cnf"] = map[string]any{"jwk": privJWK} }},
		{"harness.attestation {} (ATT-1)", func(m map[string]any) { obj(m, "harness")["attestation"] = map[string]any{} }},
		{"task.attestation {} (TATT-1)", func(m map[string]any) { obj(m, "task")["attestation"] = map[string]any{} }},
		{"task.attestation without harness.cnf (TATT-5)", func(m map[string]any) { delete(obj(m, "harness"), "cnf") }},
		{"intent.destination_url http:// (A-ISS-2)", func(m map[string]any) {
			m["type"] = "browser_session"
			m["intent"] = map[string]any{"destination_url": "http://service.invalid/"}
		}},
	}
	for _, tc := range cases {
		a := c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Issuance, nil, variant(tc.mut))
		c.expectRefusal(a, tc.name, 400, 422)
	}
	c.expectRefusal(c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Issuance, nil, []byte(`{"type":`)), "not JSON", 400)
}

// badTaskAttestations sends well-formed requests whose task attestation
// must not verify.
func (r *runner) badTaskAttestations(ctx context.Context, c *check) {
	if !r.needAuthority(c) {
		return
	}
	svc := r.issuanceService()
	if svc == "" {
		svc = "https://service.invalid"
	}
	type mk func(key *dpop.Key, req *pass.IssuanceRequest) (string, error)
	claims := func(req *pass.IssuanceRequest, at time.Time, ttl time.Duration) map[string]any {
		cl := claimsAt(at, ttl)
		cl["iss"], cl["task_id"], cl["task_description_hash"] = req.Harness.ID, req.Task.ID, dpop.DescriptionHash(req.Task.Description)
		return cl
	}
	now := time.Now
	cases := []struct {
		name string
		make mk
	}{
		{"signed by another key (TATT-6)", func(key *dpop.Key, req *pass.IssuanceRequest) (string, error) {
			other, err := es256Key()
			if err != nil {
				return "", err
			}
			return newForge("", claims(req, now(), time.Minute)).sign(other, false)
		}},
		{"task_id of another task (TATT-7)", func(key *dpop.Key, req *pass.IssuanceRequest) (string, error) {
			return newForge("", claims(req, now(), time.Minute)).claim("task_id", "other-task").sign(key, false)
		}},
		{"hash of another description (TATT-8)", func(key *dpop.Key, req *pass.IssuanceRequest) (string, error) {
			return newForge("", claims(req, now(), time.Minute)).claim("task_description_hash", dpop.DescriptionHash("something else")).sign(key, false)
		}},
		{"iss of another harness (TATT-9)", func(key *dpop.Key, req *pass.IssuanceRequest) (string, error) {
			return newForge("", claims(req, now(), time.Minute)).claim("iss", "other-harness").sign(key, false)
		}},
		{"expired (TATT-10)", func(key *dpop.Key, req *pass.IssuanceRequest) (string, error) {
			return newForge("", claims(req, now().Add(-10*time.Minute), time.Minute)).sign(key, false)
		}},
		{"alg none (G-6)", func(key *dpop.Key, req *pass.IssuanceRequest) (string, error) {
			return newForge("", claims(req, now(), time.Minute)).none(), nil
		}},
		{"HMAC keyed with the public holder key (G-6)", func(key *dpop.Key, req *pass.IssuanceRequest) (string, error) {
			return newForge("", claims(req, now(), time.Minute)).hs256(key.PublicJSON()), nil
		}},
		{"jwk header with another key (G-6)", func(key *dpop.Key, req *pass.IssuanceRequest) (string, error) {
			other, err := es256Key()
			if err != nil {
				return "", err
			}
			return newForge("", claims(req, now(), time.Minute)).with("jwk", publicJWK(other)).sign(other, false)
		}},
	}
	for _, tc := range cases {
		key, req, err := r.issuanceRequest(pass.BearerToken, svc)
		if err == nil {
			var tok string
			tok, err = tc.make(key, &req)
			req.Task.Attestation = &pass.JWTContainer{JWT: tok}
		}
		if err != nil {
			c.failf("%v", err)
			return
		}
		a := c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Issuance, nil, req)
		c.expectRefusal(a, tc.name, 400, 401, 422)
	}
}

// statusChecks obtains a pass and judges every status answer seen.
func (r *runner) statusChecks(ctx context.Context, c *check) {
	if !r.needAuthority(c) {
		return
	}
	svc := r.issuanceService()
	if svc == "" {
		c.skipf("needs a Service the Authority issues for (the Service target or Config.KitService)")
		return
	}
	g, err := r.acquire(ctx, c, r.auth, svc, pass.BearerToken)
	if g == nil || len(g.statuses) == 0 {
		c.skipf("no issuance answer: %v", err)
		return
	}
	for i, s := range g.statuses {
		if err := r.sch.validate(s.body, "issuance-status.schema.json", ""); err != nil {
			c.failf("answer %d: %v", i+1, err)
		}
		var st pass.IssuanceStatus
		if json.Unmarshal(s.body, &st) == nil && st.Status == pass.StatusPending && st.PollAfterMS == nil {
			r.note(c, "A-STAT-3 (SHOULD): a pending answer has no poll_after_ms")
		}
	}
	if first := g.statuses[0]; first.status != http.StatusAccepted {
		r.note(c, fmt.Sprintf("A-ISS-6 (SHOULD): the issuance answer was %d, not 202", first.status))
	}
	if err != nil {
		c.skipf("the request was not approved: %v", err)
		return
	}
	// A-STAT-2: the terminal state stays.
	a := c.send(ctx, http.MethodGet, g.statusURL, nil, nil)
	var st pass.IssuanceStatus
	if !a.ok() || json.Unmarshal(a.body, &st) != nil || st.Status != pass.StatusApproved {
		c.failf("A-STAT-2: polling an approved request again answered %s", a)
	} else if err := r.sch.validate(a.body, "issuance-status.schema.json", ""); err != nil {
		c.failf("%v", err)
	}
	if a.ok() && !strings.Contains(strings.ToLower(a.header.Get("Cache-Control")), "no-store") {
		r.note(c, "G-2 (recommended): an approved status carrying the pass lacks Cache-Control: no-store")
	}
}

// validationBasics: no assertion, wrong aud, then the right call, then a
// second one.
func (r *runner) validationBasics(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	g := r.kitPass(ctx, c, 0)
	if g == nil {
		return
	}
	body := pass.ValidationRequest{AgentPass: pass.PassValue{Value: g.value}}
	c.expectRefusal(c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Validate, nil, body), "no Authorization", 401)
	k := r.cfg.KitService
	wrongAud, _ := assertion.Sign(k.keys.Current(), k.origins[0], "https://other-authority.invalid", 0, time.Now())
	c.expectRefusal(c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Validate, bearer(wrongAud), body), "assertion for another Authority", 401)
	a := r.validate(ctx, c, 0, g.value)
	if !a.ok() {
		c.failf("the pass did not validate after the refused calls (consumed by one of them?): %s", a)
		return
	}
	r.checkValidation(c, a, g)
	r.lastValidated = &validated{grant: g}
	_ = json.Unmarshal(a.body, &r.lastValidated.res)
	again := r.validate(ctx, c, 0, g.value)
	c.expectRefusal(again, "second validation (A-VAL-6)", 409)
}

type validated struct {
	grant *grant
	res   pass.ValidationResponse
}

// checkValidation judges a successful validation answer.
func (r *runner) checkValidation(c *check, a *answer, g *grant) {
	if err := r.sch.validate(a.body, "authority-validate.schema.json", "response"); err != nil {
		c.failf("A-VAL-9: %v", err)
	}
	var v pass.ValidationResponse
	if err := pass.Decode(a.body, &v); err != nil {
		c.failf("A-VAL-9: %v", err)
		return
	}
	if v.Type != g.typ {
		c.failf("type %q, the pass was requested as %q", v.Type, g.typ)
	}
	if !pass.SameEmail(v.User.Email, g.pending.User) {
		c.failf("user.email %q, the request was for %q", v.User.Email, g.pending.User)
	}
	if v.Cnf == nil || !dpop.SameKey(v.Cnf.JWK, g.key.PublicJSON()) {
		r.note(c, "G-33 (recommended): cnf is not the harness.cnf key of the request, so holder binding is lost")
	}
	if v.Task != nil && !v.Task.Attested {
		r.note(c, "TATT-12: the task was attested but task.attested is not true")
	}
	if g.typ == pass.BearerToken && v.DestinationURL != "" {
		r.note(c, "A-VAL-10: destination_url on a bearer pass")
	}
}

// audienceBeforeConsumption validates a pass from the wrong Service, then
// from the right one.
func (r *runner) audienceBeforeConsumption(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	k := r.cfg.KitService
	if len(k.origins) < 2 {
		c.skipf("needs a KitService with two origins")
		return
	}
	g := r.kitPass(ctx, c, 0)
	if g == nil {
		return
	}
	wrong := r.validate(ctx, c, 1, g.value)
	c.expectRefusal(wrong, "validation by a Service that is not the audience", 403)
	if wrong.ok() {
		return
	}
	right := r.validate(ctx, c, 0, g.value)
	if !right.ok() {
		c.failf("the audience then could not validate: the refused call consumed the pass (%s)", right)
	}
}

// parallelValidation races validations of one pass.
func (r *runner) parallelValidation(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	g := r.kitPass(ctx, c, 0)
	if g == nil {
		return
	}
	const n = 8
	answers := make([]*answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = r.send(ctx, nil, http.MethodPost, r.auth.cfg.Endpoints.Validate, bearer(r.assertionFor(0)), pass.ValidationRequest{AgentPass: pass.PassValue{Value: g.value}})
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	for _, a := range answers {
		switch {
		case a.ok():
			ok++
		case a.refused():
			refused++
		}
	}
	c.res.Exchanges = append(c.res.Exchanges, Exchange{Method: "POST ×8", URL: r.auth.cfg.Endpoints.Validate, Response: fmt.Sprintf("%d succeeded, %d refused", ok, refused)})
	if ok != 1 || refused != n-1 {
		c.failf("%d of %d parallel validations succeeded and %d were refused; want exactly one success", ok, n, refused)
	}
}

// assertionHygiene offers forged assertions on an unknown pass and
// compares each answer with the one a good assertion gets.
func (r *runner) assertionHygiene(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	k := r.cfg.KitService
	value := "conformance-unknown-" + r.runID
	base := r.validate(ctx, c, 0, value)
	if base.err != nil {
		c.failf("baseline: %v", base.err)
		return
	}
	baseCode := base.errorCode()
	other, err := es256Key()
	if err != nil {
		c.failf("%v", err)
		return
	}
	signer := k.keys.Current()
	mk := func(at time.Time, ttl time.Duration) *forge {
		cl := claimsAt(at, ttl)
		cl["iss"], cl["aud"] = k.origins[0], r.auth.cfg.Authority
		return newForge(assertion.Type, cl).with("kid", signer.KeyID())
	}
	sign := func(f *forge, key *dpop.Key) string { t, _ := f.sign(key, false); return t }
	pubJSON, _ := json.Marshal(signer.Public())
	now := time.Now()
	cases := []struct{ name, tok string }{
		{"alg none", mk(now, time.Minute).none()},
		{"HS256 keyed with the Service's public JWK", mk(now, time.Minute).hs256(pubJSON)},
		{"HS256 keyed with the Service's public JWKS key bytes", mk(now, time.Minute).hs256(signer.PublicJSON())},
		{"signed by a key not in the Service's JWKS (A-VAL-2)", sign(mk(now, time.Minute), other)},
		{"jwk header carrying the signer's own key", sign(mk(now, time.Minute).with("jwk", publicJWK(other)), other)},
		{"jku header", sign(mk(now, time.Minute).with("jku", "https://attacker.invalid/jwks"), signer)},
		{"x5u header", sign(mk(now, time.Minute).with("x5u", "https://attacker.invalid/c.pem"), signer)},
		{"unknown crit header", sign(mk(now, time.Minute).with("crit", []string{"x-conformance"}).with("x-conformance", true), signer)},
		{"typ of a harness proof (G-8)", sign(mk(now, time.Minute).with("typ", "agentpass-proof+jwt"), signer)},
		{"expired", sign(mk(now.Add(-10*time.Minute), time.Minute), signer)},
		{"issued in the future", sign(mk(now.Add(10*time.Minute), time.Minute), signer)},
		{"exp missing", sign(mk(now, time.Minute).withoutClaim("exp"), signer)},
		{"aud of another Authority", sign(mk(now, time.Minute).claim("aud", "https://other-authority.invalid"), signer)},
	}
	for _, tc := range cases {
		a := c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Validate, bearer(tc.tok), pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}})
		if a.err == nil && a.status == base.status && a.errorCode() == baseCode {
			c.failf("%s: answered like a good assertion (%d %s): the assertion was accepted", tc.name, a.status, baseCode)
			continue
		}
		c.expectRefusal(a, tc.name, 401)
	}
}

// assertionLifetimeReplay checks our recommended bounds.
func (r *runner) assertionLifetimeReplay(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	k := r.cfg.KitService
	value := "conformance-unknown-" + r.runID
	base := r.validate(ctx, c, 0, value)
	cl := claimsAt(time.Now(), time.Hour)
	cl["iss"], cl["aud"] = k.origins[0], r.auth.cfg.Authority
	long, _ := newForge(assertion.Type, cl).with("kid", k.keys.Current().KeyID()).sign(k.keys.Current(), false)
	a := c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Validate, bearer(long), pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}})
	if a.status == base.status && a.errorCode() == base.errorCode() {
		c.failf("an assertion living one hour was accepted")
	}
	// A jti is spent by a request that succeeds: replay one on the
	// authorization check of the delegation A-VAL-1 created.
	v := r.lastValidated
	if v == nil {
		r.note(c, "replay not checked: no validated delegation")
		return
	}
	once := r.assertionFor(0)
	body := pass.AuthorizationCheckRequest{AuthorizationID: v.res.AuthorizationID}
	first := c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.AuthorizationCheck, bearer(once), body)
	if !first.ok() {
		r.note(c, "replay not checked: the authorization check failed")
		return
	}
	second := c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.AuthorizationCheck, bearer(once), body)
	if second.ok() {
		c.failf("an assertion with the same jti was accepted twice")
	}
}

// scopeCallChecks judges the available_scopes calls the Authority made to
// the kit's Service during this run.
func (r *runner) scopeCallChecks(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	calls := r.cfg.KitService.scopeCalls()
	if len(calls) == 0 {
		c.skipf("the Authority never called the kit's available_scopes (it may not ask every Service)")
		return
	}
	replay := dpop.NewMemoryReplayCache()
	for i, call := range calls {
		if i >= 3 {
			break
		}
		at := call.at
		v, err := assertion.NewVerifier(assertion.Config{Keys: r.disc, Audience: call.origin, Replay: replay, Now: func() time.Time { return at }})
		if err != nil {
			c.failf("%v", err)
			return
		}
		t, err := assertion.Parse(call.bearer)
		if err != nil {
			c.failf("call %d: %v", i+1, err)
			continue
		}
		if t.Issuer() != r.auth.cfg.Authority {
			c.failf("call %d: iss %q is not the authority %q", i+1, t.Issuer(), r.auth.cfg.Authority)
			continue
		}
		if _, err := v.Verify(ctx, t, r.auth.cfg.JWKSURI, r.auth.cfg.Authority); err != nil {
			c.failf("call %d: %v", i+1, err)
		}
		var req pass.AvailableScopesRequest
		if err := pass.Decode(call.body, &req); err != nil {
			c.failf("call %d body (A-SCOPE-4): %v", i+1, err)
		}
	}
	c.got("%d calls judged", min(len(calls), 3))
}

// authorizationChecks uses the delegation validationBasics created.
func (r *runner) authorizationChecks(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	u := r.auth.cfg.Endpoints.AuthorizationCheck
	c.expectRefusal(c.send(ctx, http.MethodPost, u, bearer(r.assertionFor(0)), map[string]any{}), "{} (A-AUTHZ-2)", 400)
	c.expectRefusal(c.send(ctx, http.MethodPost, u, nil, pass.AuthorizationCheckRequest{AuthorizationID: "authz-conformance"}), "no Authorization (A-AUTHZ-1)", 401)
	unk := c.send(ctx, http.MethodPost, u, bearer(r.assertionFor(0)), pass.AuthorizationCheckRequest{AuthorizationID: "conformance-unknown-" + r.runID})
	if unk.status != http.StatusNotFound {
		c.failf("unknown authorization_id (A-AUTHZ-5): want 404, got %s", unk)
	}
	v := r.lastValidated
	if v == nil {
		c.skipf("no validated delegation to check (A-VAL-1 did not pass)")
		return
	}
	a := c.send(ctx, http.MethodPost, u, bearer(r.assertionFor(0)), pass.AuthorizationCheckRequest{AuthorizationID: v.res.AuthorizationID})
	if !a.ok() {
		c.failf("A-AUTHZ-3: an active delegation answered %s", a)
		return
	}
	if err := r.sch.validate(a.body, "authority-authorization-check.schema.json", "response"); err != nil {
		c.failf("A-AUTHZ-3: %v", err)
	}
	var res pass.AuthorizationCheckResponse
	if err := pass.Decode(a.body, &res); err == nil && !res.Scope.SubsetOf(v.res.Scope) {
		c.failf("G-15: the check widened the scope %v to %v", v.res.Scope, res.Scope)
	}
	if r.cfg.Approver == nil {
		r.note(c, "A-AUTHZ-4 not checked: no Approver to revoke with")
		return
	}
	if err := r.cfg.Approver.Revoke(ctx, v.grant.pending); err != nil {
		r.note(c, "A-AUTHZ-4 not checked: "+err.Error())
		return
	}
	after := c.send(ctx, http.MethodPost, u, bearer(r.assertionFor(0)), pass.AuthorizationCheckRequest{AuthorizationID: v.res.AuthorizationID})
	if after.status != http.StatusNotFound {
		c.failf("A-AUTHZ-4: a revoked delegation answered %s, want exactly 404", after)
	}
}

func (r *runner) foreignAuthorizationCheck(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	if len(r.cfg.KitService.origins) < 2 {
		c.skipf("needs a KitService with two origins")
		return
	}
	g := r.kitPass(ctx, c, 0)
	if g == nil {
		return
	}
	a := r.validate(ctx, c, 0, g.value)
	var v pass.ValidationResponse
	if !a.ok() || json.Unmarshal(a.body, &v) != nil {
		c.skipf("validation failed: %s", a)
		return
	}
	foreign := c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.AuthorizationCheck, bearer(r.assertionFor(1)), pass.AuthorizationCheckRequest{AuthorizationID: v.AuthorizationID})
	if foreign.status != http.StatusNotFound {
		c.failf("another Service's check answered %s, want 404", foreign)
	}
}

var _ = errors.New
