package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

const roleService = "service"

func (r *runner) needService(c *check) bool {
	if r.cfg.ServiceOrigin == "" && r.cfg.ServiceConfigURL == "" {
		c.skipf("no Service target")
		return false
	}
	if !r.svc.usable() {
		c.skipf("the Service configuration is not usable")
		return false
	}
	return true
}

// needResolved also needs the Authority the Service named for the user.
func (r *runner) needResolved(c *check) bool {
	if !r.needService(c) {
		return false
	}
	if !r.svcAuth.usable() {
		c.skipf("no usable Authority for %s at this Service", r.cfg.User)
		return false
	}
	return true
}

// servicePass obtains a fresh pass of typ for the Service under test.
func (r *runner) servicePass(ctx context.Context, c *check, typ pass.PassType) *grant {
	g, err := r.acquire(ctx, c, r.svcAuth, r.svc.cfg.Service.Origin, typ)
	if err != nil {
		c.skipf("could not obtain a pass: %v", err)
		return nil
	}
	return g
}

func (r *runner) redeemURL(typ pass.PassType) string {
	if typ == pass.BrowserSession {
		return r.svc.cfg.Endpoints.RedeemBrowserSession
	}
	return r.svc.cfg.Endpoints.RedeemBearerToken
}

// redeem sends body to the endpoint of typ.
func (r *runner) redeem(ctx context.Context, c *check, typ pass.PassType, body any) *answer {
	return c.send(ctx, http.MethodPost, r.redeemURL(typ), nil, body)
}

// noCredential fails c when a carries a bearer token or an initialization
// URL.
func noCredential(c *check, a *answer, what string) {
	var m map[string]any
	if json.Unmarshal(a.body, &m) == nil {
		if _, ok := m["bearer_token"]; ok {
			c.failf("%s: a bearer_token was issued", what)
		}
		if _, ok := m["initialization_url"]; ok {
			c.failf("%s: an initialization_url was issued", what)
		}
	}
}

func (r *runner) serviceChecks() []def {
	svc := func(group, id, name string, level Level, expected string, fn func(context.Context, *check)) def {
		return def{role: roleService, group: group, id: id, name: name, level: level, expected: expected, fn: fn}
	}
	first := []def{
		svc("discovery", "S-CFG-1", "Service configuration is discovered and served", Required,
			"§4.1: the Service publishes _agentpass-service.{host} TXT holding the https URL of its configuration, which answers GET with the JSON configuration.",
			r.discoverService),
		svc("configuration", "S-CFG-2", "configuration validates against service-configuration.schema.json", Required,
			"§4.1, App. A: version, kind \"service\", service.origin, jwks_uri, trust and the four endpoints, all https URLs.",
			func(ctx context.Context, c *check) {
				if r.svc == nil || r.svc.raw == nil {
					c.skipf("no configuration fetched")
					return
				}
				if err := r.sch.validate(r.svc.raw, "service-configuration.schema.json", ""); err != nil {
					c.failf("%v", err)
				}
				if r.svc.err != nil {
					c.failf("%v", r.svc.err)
				}
			}),
		r.tlsCheck(roleService, func() string {
			if r.svc == nil {
				return ""
			}
			return r.svc.configURL
		}),
		svc("resolution", "S-RES-7", "a domain whose record is \"none\" gets no Authority", Required,
			"§4.2 step 4, §5.2.1: TXT none means delegation is disabled: the Service rejects (403 suggested) and names no Authority of any kind.",
			func(ctx context.Context, c *check) { r.refusedResolution(ctx, c, r.cfg.DisabledUser, 403) }),
		svc("resolution", "S-RES-8", "an unusable enterprise configuration gets no fallback", Required,
			"§4.2 step 4: an enterprise record whose configuration cannot be fetched or fails validation rejects the resolution (502 suggested), with no Service Authority or federated fallback (G-10, G-11).",
			func(ctx context.Context, c *check) { r.refusedResolution(ctx, c, r.cfg.BrokenUser, 502) }),
		svc("configuration", "X-DNS-11", "configuration carries Cache-Control with a bounded lifetime", Recommended,
			"§5.2.1: configuration endpoints SHOULD send an appropriate Cache-Control (finite max-age or no-cache).",
			func(ctx context.Context, c *check) {
				if !r.needService(c) {
					return
				}
				checkCacheControl(c, r.svc.header)
			}),
		svc("configuration", "S-CFG-4", "jwks_uri serves public signing keys with kids", Required,
			"§4.1: jwks_uri serves the keys that verify the Service's assertions; G-6: public keys only, picked by kid.",
			func(ctx context.Context, c *check) {
				if !r.needService(c) {
					return
				}
				r.checkJWKS(ctx, c, r.svc.cfg.JWKSURI)
			}),
		svc("resolution", "S-RES-1", "malformed resolution requests are refused", Required,
			"§4.2: resolution takes JSON holding user.email; a malformed body or email is rejected (400 suggested).",
			func(ctx context.Context, c *check) {
				if !r.needService(c) {
					return
				}
				u := r.svc.cfg.Endpoints.ResolveAuthorities
				c.expectRefusal(c.send(ctx, http.MethodPost, u, nil, map[string]any{}), "{}", 400)
				c.expectRefusal(c.send(ctx, http.MethodPost, u, nil, map[string]any{"user": map[string]any{"email": "not-an-address"}}), "bad email", 400)
				c.expectRefusal(c.send(ctx, http.MethodPost, u, nil, []byte(`{"user":`)), "truncated JSON", 400)
			}),
		svc("resolution", "X-ERR-3", "the same failure gives the same error code", Recommended,
			"§4.5: error.code is a stable machine token.",
			func(ctx context.Context, c *check) {
				if !r.needService(c) {
					return
				}
				u := r.svc.cfg.Endpoints.ResolveAuthorities
				a1 := c.send(ctx, http.MethodPost, u, nil, map[string]any{})
				a2 := c.send(ctx, http.MethodPost, u, nil, map[string]any{})
				if a1.errorCode() == "" || a1.errorCode() != a2.errorCode() {
					c.failf("codes %q and %q", a1.errorCode(), a2.errorCode())
				}
			}),
		svc("resolution", "S-RES-13", "resolution names exactly one kind of Authority", Required,
			"§4.2: a successful answer holds exactly one of enterprise_authority, service_authority, trusted_federated_authorities (SDK choice, G-36: service_authority with trusted_federated_authorities is the follow-up draft's two-field shape).",
			r.resolve),
		svc("available scopes", "S-SCOPE-1", "available_scopes refuses a call without an assertion", Required,
			"§4.3: requests carry Authorization: Bearer {assertion_jwt}; otherwise rejected (401 suggested).",
			func(ctx context.Context, c *check) {
				if !r.needService(c) {
					return
				}
				body := map[string]any{"user": map[string]any{"email": r.cfg.User}, "agent": map[string]any{"id": r.cfg.HarnessID}}
				c.expectRefusal(c.send(ctx, http.MethodPost, r.svc.cfg.Endpoints.AvailableScopes, nil, body), "no Authorization", 401)
			}),
		svc("jwt hygiene", "S-SCOPE-3", "available_scopes refuses forged Authority assertions", Required,
			"§4.3: the assertion is verified with keys from the jwks_uri of the Authority configuration for its iss; G-6: never alg none, never HMAC, never keys from jku/x5u/jwk headers.",
			r.scopeAssertionHygiene),
		svc("redemption", "S-RED-5", "malformed redemptions are refused before the pass is used", Required,
			"§4.4 step 1: JSON parses, agentpass.type/value, authority and user.email present and type equals the endpoint's, else reject before calling the Authority; §4.4 step 2: an untrusted authority is refused (S-RED-6); HB-3: harness_proof carries jwt. The same pass must still redeem afterwards.",
			r.malformedRedemptions),
		svc("redemption", "S-RED-9", "a pass the Authority does not know is refused", Required,
			"§4.4 step 4: the Service asks the Authority's validate endpoint; any refusal (unknown, consumed, expired, wrong audience) rejects the redemption with no credential.",
			func(ctx context.Context, c *check) {
				if !r.needResolved(c) {
					return
				}
				key, err := es256Key()
				if err != nil {
					c.failf("%v", err)
					return
				}
				g := &grant{key: key, harnessID: r.cfg.HarnessID, typ: pass.BearerToken, auth: r.svcAuth,
					value: "conformance-unknown-" + r.runID, pending: Pending{User: r.cfg.User}}
				body, err := g.redemption(r.svc.cfg.Service.Origin)
				if err != nil {
					c.failf("%v", err)
					return
				}
				a := r.redeem(ctx, c, pass.BearerToken, body)
				c.expectRefusal(a, "unknown pass", 422)
				noCredential(c, a, "unknown pass")
			}),
		svc("redemption", "S-TOK-1", "a bearer redemption succeeds and is single use", Required,
			"§4.6: a successful bearer redemption returns bearer_token (schema service-redeem-bearer-token); §2.1: a pass is single use, so redeeming it again is refused (409 suggested).",
			r.bearerRedemption),
		svc("holder binding", "HB-8", "a redemption without harness_proof is refused when cnf is bound", Required,
			"§3.1.1, §4.4 step 7: with cnf in the validation response, a redemption lacking harness_proof is rejected (401 suggested).",
			func(ctx context.Context, c *check) {
				r.proofCheck(ctx, c, func(g *grant, body *pass.RedemptionRequest) error { body.HarnessProof = nil; return nil })
			}),
		svc("holder binding", "HB-7", "a proof signed by another key is refused", Required,
			"§3.1.1 step 3: the Service checks the harness_proof signature with cnf.jwk and rejects the redemption when it does not verify.",
			func(ctx context.Context, c *check) {
				r.proofCheck(ctx, c, func(g *grant, body *pass.RedemptionRequest) error {
					other, err := es256Key()
					if err != nil {
						return err
					}
					cl := claimsAt(time.Now(), time.Minute)
					cl["iss"], cl["aud"] = g.harnessID, r.svc.cfg.Service.Origin
					p, err := newForge("", cl).sign(other, false)
					body.HarnessProof = &pass.JWTContainer{JWT: p}
					return err
				})
			}),
	}
	more := []def{
		svc("redemption", "S-RED-11", "a requested_scope outside the approval is refused", Required,
			"§4.4 step 6: the effective scope is requested_scope ∩ approved scope; an empty intersection rejects the redemption.",
			func(ctx context.Context, c *check) {
				r.proofCheck(ctx, c, func(g *grant, body *pass.RedemptionRequest) error {
					body.RequestedScope = pass.Scope{"conformance:not-a-scope-" + r.runID}
					return nil
				})
			}),
		svc("holder binding", "G-3", "a replayed proof jti is refused", Recommended,
			"G-3 (recommended; the holder-binding draft makes it a rule): the Service records (iss, jti) until exp and refuses a proof seen before, even on another pass.",
			r.proofReplay),
		svc("browser", "S-BRW-1", "browser redemption and initialization URL", Required,
			"§4.5: a browser redemption returns an https initialization_url that works once (S-BRW-3), redirects to the approved destination and never elsewhere (S-BRW-15), sets Secure, HttpOnly, SameSite cookies (S-BRW-14), and forbids caching (S-BRW-16); unknown tokens are refused (S-BRW-11).",
			r.browserFlow),
		svc("authorization", "S-AUTHZ-6", "a revocation reaches the Service", Required,
			"§4.4, §5.5.1: on a 404 authorization check the Service invalidates every token of that authorization_id; the token stops working.",
			r.revocationReachesService),
	}
	return append(append(first, r.proofHygiene()...), more...)
}

func checkCacheControl(c *check, h http.Header) {
	cc := strings.ToLower(h.Get("Cache-Control"))
	switch {
	case cc == "":
		c.failf("no Cache-Control header")
	case strings.Contains(cc, "max-age"), strings.Contains(cc, "no-cache"), strings.Contains(cc, "no-store"):
		c.got("Cache-Control: %s", cc)
	default:
		c.failf("Cache-Control %q has no max-age, no-cache or no-store", cc)
	}
}

func (r *runner) checkJWKS(ctx context.Context, c *check, u string) {
	a := c.send(ctx, http.MethodGet, u, nil, nil)
	if !a.ok() {
		c.failf("JWKS: %s", a)
		return
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := a.json(&set); err != nil || len(set.Keys) == 0 {
		c.failf("no keys array with keys: %v", err)
		return
	}
	for i, k := range set.Keys {
		for _, priv := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[priv]; ok {
				c.failf("key %d holds private or symmetric member %q", i, priv)
			}
		}
		if kid, _ := k["kid"].(string); kid == "" {
			c.failf("key %d has no kid", i)
		}
	}
	c.got("%d public keys", len(set.Keys))
}

// discoverService finds the Service, fetches its configuration and asks
// which Authority governs the user.
func (r *runner) discoverService(ctx context.Context, c *check) {
	if r.cfg.ServiceOrigin == "" && r.cfg.ServiceConfigURL == "" {
		c.skipf("no Service target")
		return
	}
	r.svc = &serviceTarget{origin: r.cfg.ServiceOrigin, configURL: r.cfg.ServiceConfigURL}
	if r.svc.configURL == "" {
		host, err := pass.Host(r.cfg.ServiceOrigin)
		if err != nil {
			c.failf("service origin: %v", err)
			return
		}
		u, err := r.disc.LookupServiceTXT(ctx, host)
		c.res.Exchanges = append(c.res.Exchanges, Exchange{Method: "DNS TXT", URL: "_agentpass-service." + host, Response: u, Error: errString(err)})
		if err != nil {
			c.failf("TXT _agentpass-service.%s: %v", host, err)
			return
		}
		r.svc.configURL = u
	}
	a := c.send(ctx, http.MethodGet, r.svc.configURL, nil, nil)
	if !a.ok() {
		c.failf("configuration: %s", a)
		return
	}
	r.svc.raw, r.svc.header = a.body, a.header
	var cfg pass.ServiceConfiguration
	if err := pass.Decode(a.body, &cfg); err != nil {
		r.svc.err = err
		c.failf("configuration: %v", err)
		return
	}
	if r.cfg.ServiceOrigin != "" && !pass.SameOrigin(cfg.Service.Origin, r.cfg.ServiceOrigin) {
		c.failf("service.origin %q is not the discovered origin %q", cfg.Service.Origin, r.cfg.ServiceOrigin)
		return
	}
	r.svc.cfg = &cfg
	c.got("configuration at %s", r.svc.configURL)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// resolve asks the Service which Authority governs the user, and fetches
// that Authority's configuration.
func (r *runner) resolve(ctx context.Context, c *check) {
	if !r.needService(c) {
		return
	}
	a := c.send(ctx, http.MethodPost, r.svc.cfg.Endpoints.ResolveAuthorities, nil, pass.ResolutionRequest{User: pass.User{Email: r.cfg.User}})
	if !a.ok() {
		c.failf("resolution for %s: %s", r.cfg.User, a)
		return
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(a.body, &m)
	_, sa := m["service_authority"]
	_, fed := m["trusted_federated_authorities"]
	_, ent := m["enterprise_authority"]
	twoField := sa && fed && !ent
	if err := r.sch.validate(a.body, "service-authority-resolution.schema.json", "response"); err != nil && !twoField {
		c.failf("%v", err)
	}
	var res pass.ResolutionResponse
	if err := pass.Decode(a.body, &res); err != nil {
		c.failf("%v", err)
		return
	}
	var pick *pass.AuthorityRef
	switch {
	case res.EnterpriseAuthority != nil:
		pick = res.EnterpriseAuthority
	default:
		cands := res.TrustedFederatedAuthorities
		if res.ServiceAuthority != nil {
			cands = append([]pass.AuthorityRef{*res.ServiceAuthority}, cands...)
		}
		for i := range cands {
			if r.cfg.AuthorityID == "" || cands[i].Authority == r.cfg.AuthorityID {
				pick = &cands[i]
				break
			}
		}
	}
	if pick == nil {
		c.skipf("the resolution names no Authority the kit was told to use")
		return
	}
	r.svc.resolved = pick
	r.svcAuth = r.fetchAuthority(ctx, c, pick.AuthorityConfigurationURL)
	if r.svcAuth.usable() && r.svcAuth.cfg.Authority != pick.Authority {
		c.failf("the configuration at %s names authority %q, the resolution %q (G-31)", pick.AuthorityConfigurationURL, r.svcAuth.cfg.Authority, pick.Authority)
	}
	c.got("%s resolves to %s", r.cfg.User, pick.Authority)
}

// refusedResolution asks for the Authority of user, which must be refused
// without naming any.
func (r *runner) refusedResolution(ctx context.Context, c *check, user string, suggested int) {
	if !r.needService(c) {
		return
	}
	if user == "" {
		c.skipf("no test user for this branch in the configuration")
		return
	}
	a := c.send(ctx, http.MethodPost, r.svc.cfg.Endpoints.ResolveAuthorities, nil, pass.ResolutionRequest{User: pass.User{Email: user}})
	if a.err != nil || a.ok() {
		c.failf("want a refusal, got %s", a)
		return
	}
	if err := r.sch.validate(a.body, "error-response.schema.json", ""); err != nil {
		c.failf("%d with a body that is not an error document: %v", a.status, err)
	}
	for _, m := range []string{"enterprise_authority", "service_authority", "trusted_federated_authorities"} {
		if strings.Contains(string(a.body), `"`+m+`"`) {
			c.failf("the refusal names %s", m)
		}
	}
	if a.status != suggested {
		r.note(c, fmt.Sprintf("%d (suggested %d)", a.status, suggested))
	}
}

// fetchAuthority fetches and decodes an Authority configuration.
func (r *runner) fetchAuthority(ctx context.Context, c *check, u string) *authorityTarget {
	t := &authorityTarget{configURL: u}
	a := c.send(ctx, http.MethodGet, u, nil, nil)
	if !a.ok() {
		t.err = fmt.Errorf("authority configuration: %s", a)
		return t
	}
	t.raw, t.header = a.body, a.header
	var cfg pass.AuthorityConfiguration
	if err := pass.Decode(a.body, &cfg); err != nil {
		t.err = err
		return t
	}
	t.cfg = &cfg
	return t
}

// scopeAssertionHygiene offers the Service assertions claiming to come from
// the Authority it named, none of which that Authority signed.
func (r *runner) scopeAssertionHygiene(ctx context.Context, c *check) {
	if !r.needResolved(c) {
		return
	}
	iss, aud := r.svcAuth.cfg.Authority, r.svc.cfg.Service.Origin
	authKeys := r.authorityJWKS(ctx)
	kit, err := es256Key()
	if err != nil {
		c.failf("%v", err)
		return
	}
	mk := func() *forge {
		cl := claimsAt(time.Now(), time.Minute)
		cl["iss"], cl["aud"] = iss, aud
		f := newForge("", cl)
		if len(authKeys) > 0 {
			f.with("kid", authKeys[0]["kid"])
		}
		return f
	}
	var secret []byte
	if len(authKeys) > 0 {
		secret, _ = json.Marshal(authKeys[0])
	}
	signedByKit := func(f *forge) string { t, _ := f.sign(kit, false); return t }
	cases := []struct{ name, tok string }{
		{"alg none", mk().none()},
		{"HS256 keyed with the Authority's public JWK", mk().hs256(secret)},
		{"signed by a key not in the Authority's JWKS", signedByKit(mk())},
		{"jwk header carrying the signer's own key", signedByKit(mk().with("jwk", publicJWK(kit)))},
		{"jku header pointing elsewhere", signedByKit(mk().with("jku", "https://attacker.invalid/jwks"))},
		{"x5u header pointing elsewhere", signedByKit(mk().with("x5u", "https://attacker.invalid/c.pem"))},
		{"unknown crit header", signedByKit(mk().with("crit", []string{"x-conformance"}).with("x-conformance", true))},
		{"expired, signed by a key not in the JWKS", signedByKit(mk().claim("exp", time.Now().Add(-time.Hour).Unix()).claim("iat", time.Now().Add(-2*time.Hour).Unix()))},
	}
	body := map[string]any{"user": map[string]any{"email": r.cfg.User}, "agent": map[string]any{"id": r.cfg.HarnessID}}
	for _, tc := range cases {
		a := c.send(ctx, http.MethodPost, r.svc.cfg.Endpoints.AvailableScopes, http.Header{"Authorization": {"Bearer " + tc.tok}}, body)
		c.expectRefusal(a, tc.name, 401)
	}
}

// authorityJWKS returns the public keys of the resolved Authority.
func (r *runner) authorityJWKS(ctx context.Context) []map[string]any {
	a := r.send(ctx, nil, http.MethodGet, r.svcAuth.cfg.JWKSURI, nil, nil)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	_ = a.json(&set)
	return set.Keys
}

// freshRedemption obtains a new approved pass of type typ for the Service
// and builds its redemption, with a v0.1 holder proof; ok is false when the
// check cannot go on (it has then been failed or skipped).
func (r *runner) freshRedemption(ctx context.Context, c *check, typ pass.PassType) (*grant, pass.RedemptionRequest, bool) {
	if !r.needResolved(c) {
		return nil, pass.RedemptionRequest{}, false
	}
	g := r.servicePass(ctx, c, typ)
	if g == nil {
		return nil, pass.RedemptionRequest{}, false
	}
	body, err := g.redemption(r.svc.cfg.Service.Origin)
	if err != nil {
		c.failf("%v", err)
		return nil, pass.RedemptionRequest{}, false
	}
	return g, body, true
}

// malformedRedemptions sends broken redemptions of one pass, then the
// right one, which must still succeed.
func (r *runner) malformedRedemptions(ctx context.Context, c *check) {
	g, good, ok := r.freshRedemption(ctx, c, pass.BearerToken)
	if !ok {
		return
	}
	raw, _ := json.Marshal(good)
	variant := func(mut func(m map[string]any)) map[string]any {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		mut(m)
		return m
	}
	cases := []struct {
		name string
		typ  pass.PassType
		body any
	}{
		{"agentpass.value missing", pass.BearerToken, variant(func(m map[string]any) { delete(m["agentpass"].(map[string]any), "value") })},
		{"authority missing", pass.BearerToken, variant(func(m map[string]any) { delete(m, "authority") })},
		{"user.email missing", pass.BearerToken, variant(func(m map[string]any) { delete(m, "user") })},
		{"bearer pass at the browser endpoint", pass.BrowserSession, good},
		{"harness_proof without jwt (HB-3)", pass.BearerToken, variant(func(m map[string]any) { m["harness_proof"] = map[string]any{} })},
		{"untrusted authority (S-RED-6)", pass.BearerToken, variant(func(m map[string]any) { m["authority"] = "https://rogue.invalid" })},
		{"not JSON", pass.BearerToken, []byte(`{"agentpass":`)},
	}
	for _, tc := range cases {
		a := r.redeem(ctx, c, tc.typ, tc.body)
		c.expectRefusal(a, tc.name)
		noCredential(c, a, tc.name)
	}
	good, _ = g.redemption(r.svc.cfg.Service.Origin)
	a := r.redeem(ctx, c, pass.BearerToken, good)
	if !a.ok() {
		c.failf("the pass no longer redeems after the malformed attempts (was it used by one of them?): %s", a)
		return
	}
	r.registerToken(a)
}

// registerToken returns the bearer token of a redemption answer (already
// registered as a secret by send).
func (r *runner) registerToken(a *answer) string {
	var t struct {
		BearerToken string `json:"bearer_token"`
	}
	_ = json.Unmarshal(a.body, &t)
	return t.BearerToken
}

func (r *runner) bearerRedemption(ctx context.Context, c *check) {
	g, body, ok := r.freshRedemption(ctx, c, pass.BearerToken)
	if !ok {
		return
	}
	a := r.redeem(ctx, c, pass.BearerToken, body)
	if !a.ok() {
		c.failf("redemption of an approved pass with a v0.1 proof: %s", a)
		return
	}
	if err := r.sch.validate(a.body, "service-redeem-bearer-token.schema.json", "response"); err != nil {
		c.failf("%v", err)
	}
	var tok pass.BearerTokenResponse
	if err := pass.Decode(a.body, &tok); err != nil {
		c.failf("%v", err)
	}
	if tok.Scope == nil || tok.ExpiresIn == nil {
		r.note(c, "S-TOK-2 (SHOULD): scope or expires_in missing")
	}
	again, _ := g.redemption(r.svc.cfg.Service.Origin)
	a2 := r.redeem(ctx, c, pass.BearerToken, again)
	c.expectRefusal(a2, "second redemption of the same pass", 409)
	noCredential(c, a2, "second redemption")
}

// proofCheck redeems a fresh pass with a body changed by mut, which must
// be refused without a credential.
func (r *runner) proofCheck(ctx context.Context, c *check, mut func(g *grant, body *pass.RedemptionRequest) error) {
	g, body, ok := r.freshRedemption(ctx, c, pass.BearerToken)
	if !ok {
		return
	}
	if err := mut(g, &body); err != nil {
		c.failf("%v", err)
		return
	}
	a := r.redeem(ctx, c, pass.BearerToken, body)
	r.registerToken(a)
	c.expectRefusal(a, "redemption", 401)
	noCredential(c, a, "redemption")
}

// proofHygiene lists the JWT hygiene checks of harness proofs.
func (r *runner) proofHygiene() []def {
	type tc struct {
		id, name string
		level    Level
		expected string
		forge    func(g *grant, aud string) (string, error)
	}
	base := func(g *grant, aud string, ttl time.Duration, at time.Time) *forge {
		cl := claimsAt(at, ttl)
		cl["iss"], cl["aud"] = g.harnessID, aud
		return newForge("", cl)
	}
	now := time.Now
	cases := []tc{
		{"HB-7", "proof with alg none is refused", Required, "§3.1.1: the proof's signature is verified with cnf.jwk; an unsigned token cannot verify (G-6: never accept none).",
			func(g *grant, aud string) (string, error) { return base(g, aud, time.Minute, now()).none(), nil }},
		{"HB-7", "proof HMAC-signed with the public holder key is refused", Required, "§3.1.1: verified with cnf.jwk, an asymmetric key; G-6: HMAC with a public key as secret is the classic forgery.",
			func(g *grant, aud string) (string, error) {
				return base(g, aud, time.Minute, now()).hs256(g.key.PublicJSON()), nil
			}},
		{"G-3", "proof for another audience is refused", Recommended, "HB-4: aud is the Service origin; G-3: the Service checks it, so a proof made for one Service is useless at another.",
			func(g *grant, aud string) (string, error) {
				return base(g, "https://other-service.invalid", time.Minute, now()).sign(g.key, false)
			}},
		{"G-3", "expired proof is refused", Recommended, "HB-5, G-3, G-7: exp is checked with at most 60 s of skew.",
			func(g *grant, aud string) (string, error) {
				return base(g, aud, time.Minute, now().Add(-10*time.Minute)).sign(g.key, false)
			}},
		{"G-7", "proof issued in the future is refused", Recommended, "G-7: iat more than 60 s ahead is refused.",
			func(g *grant, aud string) (string, error) {
				return base(g, aud, time.Minute, now().Add(10*time.Minute)).sign(g.key, false)
			}},
		{"G-6", "proof with a jku header is refused", Recommended, "G-6: keys come only from cnf; jku, x5u and jwk headers are refused.",
			func(g *grant, aud string) (string, error) {
				return base(g, aud, time.Minute, now()).with("jku", "https://attacker.invalid/jwks").sign(g.key, false)
			}},
		{"G-6", "proof with an x5u header is refused", Recommended, "G-6: keys come only from cnf; jku, x5u and jwk headers are refused.",
			func(g *grant, aud string) (string, error) {
				return base(g, aud, time.Minute, now()).with("x5u", "https://attacker.invalid/cert.pem").sign(g.key, false)
			}},
		{"G-6", "proof with an unknown crit header is refused", Recommended, "RFC 7515 §4.1.11: a crit extension the recipient does not understand makes the JWS invalid.",
			func(g *grant, aud string) (string, error) {
				return base(g, aud, time.Minute, now()).with("crit", []string{"x-conformance"}).with("x-conformance", true).sign(g.key, false)
			}},
		{"G-8", "a token of another kind (task attestation typ) is refused as a proof", Recommended, "G-8: a verifier checks typ when present; a task attestation signed with the same key is not a proof.",
			func(g *grant, aud string) (string, error) {
				return base(g, aud, time.Minute, now()).with("typ", "agentpass-task+jwt").sign(g.key, false)
			}},
		{"G-7", "proof living longer than 300 s is refused", Recommended, "G-7: exp − iat ≤ 300 s for harness proofs.",
			func(g *grant, aud string) (string, error) { return base(g, aud, time.Hour, now()).sign(g.key, false) }},
	}
	var out []def
	for _, x := range cases {
		out = append(out, def{role: roleService, group: "jwt hygiene", id: x.id, name: x.name, level: x.level, expected: x.expected,
			fn: func(ctx context.Context, c *check) {
				r.proofCheck(ctx, c, func(g *grant, body *pass.RedemptionRequest) error {
					p, err := x.forge(g, r.svc.cfg.Service.Origin)
					body.HarnessProof = &pass.JWTContainer{JWT: p}
					return err
				})
			}})
	}
	return out
}

// proofReplay redeems one pass with a proof, then a second pass with the
// same proof.
func (r *runner) proofReplay(ctx context.Context, c *check) {
	if !r.needResolved(c) {
		return
	}
	g1 := r.servicePass(ctx, c, pass.BearerToken)
	if g1 == nil {
		return
	}
	g2 := r.servicePass(ctx, c, pass.BearerToken)
	if g2 == nil {
		return
	}
	// The replayed part is (iss, jti): the second proof repeats the
	// first's claims, signed with the second pass's key, so only the jti
	// can make the Service refuse it.
	cl := claimsAt(time.Now(), time.Minute)
	cl["iss"], cl["aud"] = g1.harnessID, r.svc.cfg.Service.Origin
	p1, err := newForge("", cl).sign(g1.key, false)
	if err != nil {
		c.failf("%v", err)
		return
	}
	b1, _ := g1.redemption(r.svc.cfg.Service.Origin)
	b1.HarnessProof = &pass.JWTContainer{JWT: p1}
	a1 := r.redeem(ctx, c, pass.BearerToken, b1)
	r.registerToken(a1)
	if !a1.ok() {
		c.skipf("the first redemption failed: %s", a1)
		return
	}
	p2, err := newForge("", cl).sign(g2.key, false) // same iss and jti, g2's key
	if err != nil {
		c.failf("%v", err)
		return
	}
	b2, _ := g2.redemption(r.svc.cfg.Service.Origin)
	b2.HarnessProof = &pass.JWTContainer{JWT: p2}
	a2 := r.redeem(ctx, c, pass.BearerToken, b2)
	r.registerToken(a2)
	c.expectRefusal(a2, "second pass redeemed with a proof reusing (iss, jti)")
	noCredential(c, a2, "replayed jti")
}

// browserFlow redeems a browser pass and opens its initialization URL the
// way a browser would, then tries it again.
func (r *runner) browserFlow(ctx context.Context, c *check) {
	_, body, ok := r.freshRedemption(ctx, c, pass.BrowserSession)
	if !ok {
		return
	}
	a := r.redeem(ctx, c, pass.BrowserSession, body)
	if !a.ok() {
		c.failf("browser redemption: %s", a)
		return
	}
	if err := r.sch.validate(a.body, "service-redeem-browser-session.schema.json", "response"); err != nil {
		c.failf("%v", err)
	}
	var res pass.BrowserSessionResponse
	if err := pass.Decode(a.body, &res); err != nil {
		c.failf("%v", err)
		return
	}
	if !strings.Contains(strings.ToLower(a.header.Get("Cache-Control")), "no-store") {
		c.failf("S-BRW-16: the redemption answer lacks Cache-Control: no-store")
	}
	if res.ExpiresAt == nil || res.OneTime == nil || !*res.OneTime {
		r.note(c, "S-BRW-2 (SHOULD): expires_at or one_time: true missing")
	}
	init := res.InitializationURL
	// G-29: HEAD (a link preview) must not consume it.
	head := r.send(ctx, c, http.MethodHead, init, nil, nil)
	// S-BRW-15: a destination smuggled in the query is ignored.
	sep := "?"
	if strings.Contains(init, "?") {
		sep = "&"
	}
	first := r.send(ctx, c, http.MethodGet, init+sep+"next=https://evil.invalid/&redirect=//evil.invalid/", http.Header{"Accept": {"text/html"}}, nil)
	if first.err != nil || (first.status != http.StatusFound && first.status != http.StatusSeeOther) {
		if head.status >= 400 {
			c.failf("G-29: the initialization URL failed after a HEAD request (HEAD %d, GET %s)", head.status, first)
		} else {
			c.failf("S-BRW-13: opening the initialization URL: %s", first)
		}
		return
	}
	loc, err := url.Parse(first.header.Get("Location"))
	if err != nil {
		c.failf("S-BRW-15: unparseable Location")
	} else if loc.IsAbs() || strings.HasPrefix(loc.String(), "//") {
		if !pass.SameOrigin(loc.String(), r.svc.cfg.Service.Origin) {
			c.failf("S-BRW-15: redirected to %s, off the Service's origin", loc.Redacted())
		}
	}
	cookies := first.header.Values("Set-Cookie")
	if len(cookies) == 0 {
		c.failf("S-BRW-9: no session cookie set")
	}
	for _, ck := range cookies {
		l := strings.ToLower(ck)
		name, _, _ := strings.Cut(ck, "=")
		if !strings.Contains(l, "secure") || !strings.Contains(l, "httponly") || !strings.Contains(l, "samesite") {
			c.failf("S-BRW-14: cookie %s lacks Secure, HttpOnly or SameSite", name)
		}
	}
	again := r.send(ctx, c, http.MethodGet, init, http.Header{"Accept": {"text/html"}}, nil)
	if again.err != nil || again.status < 400 || again.status >= 500 {
		c.failf("S-BRW-3: a second GET of the initialization URL answered %s", again)
	}
	u, _ := url.Parse(init)
	if u != nil {
		q := u.Query()
		for k := range q {
			q.Set(k, "conformance-unknown-token-"+r.runID)
		}
		u.RawQuery = q.Encode()
		if len(q) == 0 {
			u.Path = u.Path[:strings.LastIndex(u.Path, "/")+1] + "conformance-unknown-token-" + r.runID
		}
		unk := r.send(ctx, c, http.MethodGet, u.String(), http.Header{"Accept": {"text/html"}}, nil)
		if unk.err != nil || unk.status < 400 || unk.status >= 500 {
			c.failf("S-BRW-11: an unknown initialization token answered %s", unk)
		}
	}
}

// revocationReachesService revokes a delegation through the Approver and
// waits for the Service to refuse its token.
func (r *runner) revocationReachesService(ctx context.Context, c *check) {
	if !r.needResolved(c) {
		return
	}
	if r.cfg.ServiceAPI == "" || r.cfg.Approver == nil {
		c.skipf("needs Config.ServiceAPI and an Approver that can revoke")
		return
	}
	g, body, ok := r.freshRedemption(ctx, c, pass.BearerToken)
	if !ok {
		return
	}
	a := r.redeem(ctx, c, pass.BearerToken, body)
	tok := r.registerToken(a)
	if !a.ok() || tok == "" {
		c.skipf("no bearer token: %s", a)
		return
	}
	auth := http.Header{"Authorization": {"Bearer " + tok}}
	if before := c.send(ctx, http.MethodGet, r.cfg.ServiceAPI, auth, nil); !before.ok() {
		c.skipf("the API did not accept a fresh token: %s", before)
		return
	}
	if err := r.cfg.Approver.Revoke(ctx, g.pending); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			c.skipf("the Approver cannot revoke")
		} else {
			c.skipf("revocation failed: %v", err)
		}
		return
	}
	deadline := time.Now().Add(r.cfg.RevocationWait)
	var last *answer
	for time.Now().Before(deadline) {
		last = r.send(ctx, nil, http.MethodGet, r.cfg.ServiceAPI, auth, nil)
		if last.status == http.StatusUnauthorized || last.status == http.StatusForbidden {
			c.send(ctx, http.MethodGet, r.cfg.ServiceAPI, auth, nil)
			c.got("refused after revocation")
			return
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	c.failf("the token still works %s after revocation: %s", r.cfg.RevocationWait, last)
}
