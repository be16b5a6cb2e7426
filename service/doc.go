// Package service lets an application accept AgentPasses: agents acting
// for the application's users, with a pass their user approved at an
// Authority.
//
// # Overview
//
// [New] builds a [Service] from a [Config] naming the application's origin,
// its signing keys and its scopes. The Service is an http.Handler for the
// AgentPass endpoints (where Harnesses redeem passes for bearer tokens or
// browser sessions), and [Service.Middleware] with [RequireScope] lets only
// live, correctly scoped delegations reach the application's handlers,
// which read who acts for whom with [DelegationFrom].
//
// # Usage
//
//	keys, err := dpop.LoadKeySet("/etc/tickets/agentpass-key.pem") // create once, keep
//	...
//	svc, err := service.New(service.Config{
//		Origin: "https://tickets.example.com",
//		Keys:   keys,
//		Scopes: []pass.ScopeInfo{{Name: "tickets:read"}, {Name: "tickets:write"}},
//	})
//	...
//	mux.Handle("/agentpass/", svc)
//	mux.Handle("GET /api/tickets", svc.Middleware(service.RequireScope("tickets:read")(listTickets)))
//	go func() { _ = svc.Run(ctx) }() // background work; the Service starts no goroutine itself
//
// In a handler behind the middleware, and when the agent's task is done:
//
//	d, _ := service.DelegationFrom(r.Context())
//	log.Printf("%s acting for %s on task %v", d.Agent, d.User, d.Task)
//	err := svc.CloseAuthorization(ctx, d.AuthorizationID, pass.CloseComplete, "task finished")
//
// Publish [Service.ConfigurationURL] in DNS, where Harnesses and
// Authorities find the Service:
//
//	_agentpass-service.tickets.example.com. TXT "https://tickets.example.com/agentpass/configuration"
//
// # Configuration
//
// Besides the Enterprise Authorities that users' domains publish in DNS, a
// Service trusts only the Authorities its Config names. The application
// says which scopes each user holds and may refuse a delegation (for
// example to create the account first):
//
//	svc, err := service.New(service.Config{
//		Origin: "https://tickets.example.com",
//		Name:   "Tickets",
//		Keys:   keys,
//		Scopes: []pass.ScopeInfo{{Name: "tickets:read"}, {Name: "tickets:write"}},
//		TrustedFederated: []pass.AuthorityRef{{
//			Authority:                 "https://approve.example.net",
//			AuthorityConfigurationURL: "https://approve.example.net/agentpass/configuration",
//		}},
//		UserScopes: func(ctx context.Context, email string) ([]string, error) {
//			return app.ScopesOf(ctx, email) // what the human may do
//		},
//		OnDelegation: func(ctx context.Context, d *service.Delegation) error {
//			_, err := app.FindOrCreateUser(ctx, d.User) // automated signup
//			return err
//		},
//		Logger: slog.Default(),
//	})
//
// Browser sessions ride on a SameSite=Lax cookie: protect state-changing
// routes against cross-site requests, for example with
// http.CrossOriginProtection. With several replicas, give them one shared
// [Store] (package servicepg) and one shared Config.ReplayCache (package
// dpop/dpoppg, the table an Authority may use too). The defaults keep their
// state in one process: a token minted by one replica would be unknown to
// the others, and a proof accepted by one could be replayed at another. A
// Store implementation must pass servicetest.TestStore.
//
// # Endpoints
//
// The Service serves seven endpoints of the specification (§4), by default
// under "/agentpass" (see [Paths]):
//
//   - GET configuration: the Service configuration document, at
//     [Service.ConfigurationURL].
//   - GET jwks.json: the public keys of [Config.Keys], which sign the
//     Service's assertions to Authorities.
//   - POST resolve-authorities: which Authority a user should get a pass
//     from (§4.2).
//   - POST available-scopes: called by Authorities during issuance (§4.3).
//   - POST redeem-bearer-token and redeem-browser-session: redemption (§4.4–4.6).
//   - GET or POST initialize: the one-time browser-session initialization URL.
//
// [Service.Middleware] authenticates agent requests (bearer token, DPoP-bound
// token, or session cookie) and puts the [Delegation] in the request context
// ([DelegationFrom]); [RequireScope] enforces scopes per route.
//
// # Which Authority is trusted
//
// One precedence function decides, for resolution, available scopes and
// redemption alike, so no endpoint accepts an Authority that resolution
// would not offer:
//
//  1. Enterprise discovery: the TXT record _agentpass.{domain of user.email}.
//  2. "none": delegation is disabled for the domain: 403, and no other
//     Authority is ever accepted.
//  3. A URL whose configuration cannot be fetched or validated, or whose
//     trust_mode is not "enterprise", and any DNS failure other than a clean
//     "no record" (SERVFAIL, timeout, invalid record): 502, fail closed,
//     never a fallback, so breaking a domain's DNS cannot hand its users to
//     another Authority.
//  4. An Enterprise Authority: only it, or the Service's own Authority when
//     the Enterprise Authority's policy.allow_service_authorities is true
//     or absent ([Config.AuthorityChoice] picks which one resolution
//     returns; [RequireServiceAuthority] accepts only the Service
//     Authority).
//  5. No record: the Service Authority ([Config.ServiceAuthority]) and the
//     configured Federated Authorities ([Config.TrustedFederated], narrowed
//     per user by [Config.FederatedPolicy]); with neither, 404.
//
// # Redemption
//
// Redemption calls the Authority's validate endpoint with a signed Service
// assertion and rejects, minting nothing, when: the pass type differs from
// the endpoint; the validated user differs from the request's (or
// precedence fails for the validated user's domain); the approved scope is
// empty or holds scopes the Service does not define ("*" expands to
// [Config.UserScopes]); requested_scope leaves nothing; the validation
// returned cnf and the harness proof is missing, invalid, for another
// request or replayed (proofs must carry htm, htu and aph when the
// validation response says the Harness asked for the hardening, or with
// [Config.RequireHardenedProofs]); the browser destination is not allowed
// ([Config.AllowedDestinations], default same origin); or the application's
// [Config.OnDelegation] refuses. Every proof check that needs no cnf runs
// before validate, so a proof that can never pass does not cost the pass; a
// refusal after validate revokes the delegation at the Authority at once,
// and [Service.Run] retries a revoke that failed.
//
// # Credentials
//
// Credentials are opaque 256-bit secrets stored only as SHA-256 hashes in
// the [Store], so a copy of the store lets no one act as an agent. Bearer
// tokens last [Config.TokenTTL] and are DPoP-bound (RFC 9449) when the
// redemption carries a DPoP header. Browser sessions start from a
// single-use initialization token (60 s by default) consumed atomically;
// the session cookie is __Host-agentpass_session (Secure, HttpOnly,
// SameSite=Lax). Nothing outlives the delegation's
// authorization_expires_at.
//
// # Delegation checks
//
// Every delegation is re-checked with its Authority when the last check is
// older than [Config.CheckInterval] (30 s), so a revocation stops the agent
// within that time: concurrent requests share one check; a 404 invalidates
// every token and session of the delegation at once; a narrower scope
// applies immediately and a wider one never widens the redemption-time
// scope; an unreachable Authority rejects requests (503) unless
// [Config.UnreachableGrace] says otherwise. Each check also re-applies the
// precedence rules to the delegation's user, so a domain that starts
// publishing "none" or an Enterprise Authority ends the other delegations
// of its users at their next check. [Service.CloseAuthorization] ends a delegation on
// behalf of the application.
//
// # Missions
//
// The Service advertises the mission extension. With an Authority that
// advertises it too, each delegation keeps its mission's id, version and
// state; a check answering that the mission is suspended holds the
// delegation instead of invalidating it (its credentials are kept,
// requests get 403 mission_suspended, checks go on at CheckInterval) until
// a check answers 200 again. Answers are ordered by the mission version:
// an older one never releases a hold or widens the scope. Requests that
// [RequireScope] refuses are reported to the Authority, aggregated, at
// most once per delegation per 10 s, by [Service.Run]. With an Authority
// that does not advertise the extension (or whose extensions object is
// broken) everything is as in v0.1.
//
// A sub-agent's delegation (one an orchestrating agent derived from its
// own) names who acts for whom in [Delegation.Chain]. The Service also
// advertises the delegation extension: whatever ends a delegation here (a
// check answering 404, [Service.CloseAuthorization]) ends in the same store operation
// the delegations of its sub-agents it holds from the same Authority, so a
// sub-agent whose own revocation is late or lost stops with its parent.
//
// # Events
//
// With [Config.EventDelivery] set, the Service advertises the events
// extension with one delivery method, and an Authority that speaks it tells
// the Service at once when a mission is revoked, completed, suspended,
// resumed or narrowed, in signed security event tokens (RFC 8417): pushed
// to the receiver at Paths.Events (RFC 8935), or fetched by
// [Service.RunEventPoller] (RFC 8936). The receiver is rate-limited before
// it reads anything; it verifies a SET only with the keys of the
// delegation's own Authority, reached through the configuration recorded
// at redemption, and answers 202 without fetching anything for a subject
// it does not hold. Events only narrow: an end invalidates the delegation
// (and, locally, its mission's descendants), a suspension holds it, a
// narrower scope applies at once; a resumption or a wider scope only makes
// the next request run an authorization check, whose answer decides. The
// mission version orders events and checks alike, so an old or replayed
// event never undoes a newer state. The periodic check stays the safety
// net for lost events.
//
// The Service also stages in place (pass.ExtStages): a delegation whose
// mission has a stage plan keeps the plan's ceiling (narrowed by
// requested_scope and the user's scopes) as its bound and the current
// stage's scope as what it allows now. [RequireScope] refuses a scope of a
// later stage with 403 stage_scope_exceeded, naming the stage that would
// allow it; a check moves the current stage, never beyond the bound.
//
// # Rate limits and audit log
//
// Resolution, initialization, redemption and available scopes are
// rate-limited per client, per network and overall ([Config.RateLimits],
// on by default): a refused request gets 429 rate_limited with Retry-After
// and has no effect (no discovery, no token used). Clients are told apart
// by remote IP address: behind a reverse proxy, set RateLimits.Key.
//
// Every redemption, initialization and rejection is logged to
// [Config.Logger] with the attributes user, agent, task, harness,
// authority, authorization_id, request_id, mission_id and mission_version
// (when the delegation has a mission), outcome and, for rejections, code
// and reason. Pass values, tokens, proofs and cookies are never
// logged.
package service
