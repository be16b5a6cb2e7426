// Package authority runs an AgentPass Authority: the party that decides
// whether an agent may act for a user at a Service, issues the single-use
// AgentPass, validates it for the Service, and keeps the delegation
// revocable afterwards.
//
// # Overview
//
// [New] builds an [Authority] from a [Config] naming its identifier, trust
// mode and signing keys; the Authority is an http.Handler for the protocol
// endpoints. An [Approver] such as [Rules] decides requests as they arrive,
// a person decides the rest with [Authority.Decide], and operators end,
// suspend or narrow live delegations with the Authority's other methods.
// State lives in a [Store]: [NewMemoryStore] for one process, package
// authoritypg for replicas.
//
// # Usage
//
// Build an Authority, mount it, and publish its configuration URL (in the
// _agentpass TXT record of each user domain for an Enterprise Authority, or
// out of band for a Federated one):
//
//	keys, err := dpop.LoadKeySet("/etc/agentpass/current.pem", "/etc/agentpass/previous.jwk")
//	a, err := authority.New(authority.Config{
//		Identifier: "https://idp.corp.example",
//		TrustMode:  pass.TrustEnterprise,
//		Keys:       keys,
//		Attesters:  []dpop.Attester{{Issuer: "https://vendor.example", JWKSURL: "https://vendor.example/jwks.json"}},
//		Approver: authority.Rules(
//			authority.Rule{Name: "attested-read", Tiers: []dpop.Tier{dpop.TierAttested},
//				Outcome: authority.Approve, Grant: authority.ScopesWithSuffix(":read")},
//		), // anything else stays pending for a person
//		OnPending:   func(ctx context.Context, r authority.Request) { go notify(r) },
//		ApprovalURL: func(id string) string { return "https://idp.corp.example/approve/" + id },
//		Logger:      slog.Default(),
//	})
//	mux.Handle("/", a)
//	// TXT _agentpass.corp.example = a.ConfigurationURL()
//
// The approval UI and the admin console, behind the application's own
// login, call the operator methods; none of them is reachable over HTTP:
//
//	reqs, err := a.Pending(ctx, authority.ListOptions{})
//	_, err = a.Decide(ctx, reqs[0].MissionID, authority.Decision{
//		Outcome: authority.Approve, Scope: pass.Scope{"tickets:read"}, DecidedBy: "human:" + operator,
//	})
//	_, err = a.Revoke(ctx, authorizationID, "human:"+operator, "laptop lost")
//
// # Endpoints
//
// The Authority serves, under the path of Config.BaseURL:
//
//	GET  /configuration          the Authority configuration (Cache-Control: max-age=300)
//	GET  /jwks.json              public keys of Config.Keys (current and retiring)
//	POST /requests               issuance: verify, ask the Service, decide, 202 + status
//	GET  /requests/{id}          issuance status (no-store; poll_after_ms while pending)
//	POST /validate               a Service redeems a pass: one atomic consume
//	POST /authorization-check    a Service re-checks a delegation
//	POST /authorization-close    a Service completes or revokes a delegation
//	POST /missions/read          the mission record: Service view (assertion) or Harness view (holder proof)
//	POST /missions/complete      the Harness ends its mission (holder proof); descendants are revoked
//	POST /missions/report        a Service reports what it refused (Config.OnObservation may act)
//	POST /missions/stage         the Harness moves its mission to another stage (holder proof)
//
// The mission endpoints are advertised in the configuration's extensions
// (pass.ExtMission). A Harness proves the mission's holder key, or an
// ancestor's, in the [pass.ProofHeader] header with htm POST, htu the endpoint
// and aph the hash of the mission id; unknown ids, other Services'
// authorizations and wrong keys all get the same 404, so nobody learns
// which missions exist. A Service that advertises the extension gets, for
// its suspended delegation's check, a 404 that also names the mission's
// state and version, so it can hold the delegation instead of ending it.
//
// A request may carry a stage plan (pass.ExtStages): the grant is the union
// of its stages, of which the mission holds one at a time. Each stage's
// gate (auto, policy or human) is raised to the floor of the effects it
// adds over the stage before it ([Config.Effects]): only reads enter by
// themselves, a write needs at least policy, anything else a person. A
// move back applies at once; a move forward goes one stage at a time
// through its gate, and a person decides with [Authority.DecideStage]
// within [Config.TransitionTTL]. For a Service or Harness that does not
// speak stages, the plan is collapsed into one stage, the whole grant
// behind the strictest gate, before anyone approves it.
//
// # Issuance
//
// Issuance runs in this order, and any failure is a structured error with
// nothing stored: the request document is validated; a task attestation is
// verified against harness.cnf; a harness attestation is verified against
// the pinned Config.Attesters (an unknown issuer is refused without a
// network call), giving the trust tier and the agent id (attested sub,
// registered name, or harness.id); the tier must be in
// Config.AcceptedTiers; an Enterprise Authority checks that the user's
// domain names it in DNS; the Service is discovered through
// _agentpass-service.{host} and must describe service.origin;
// intent.destination_url must be on that origin; the Service's
// available_scopes endpoint is called with a signed Authority assertion.
// Then the [Approver] decides: approve (a subset of the available scopes),
// deny, or pending for a person.
//
// Decisions are made in this order of precedence:
//
//  1. Checks no policy can override: attestation, tier, domain, Service
//     discovery, destination origin. A Service offering no scope is denied.
//  2. Scope compilation, when Config.Compiler is set: the compiler proposes
//     a minimal scope for the task from the scopes the Service offers, and
//     Config.ScopePolicy compares it with the scope the Harness requested
//     (see [Request.Diff]). A request for "*" is replaced by the proposal,
//     refused or sent to a person; a request beyond the proposal is sent to
//     a person, narrowed or refused. A compiler error or timeout sends the
//     request to a person. The proposal is advice: it never grants.
//  3. The Approver, once, when the request arrives. [Rules] applies the
//     first matching [Rule]; when none matches the request stays pending. An
//     Approver error leaves the request pending; an approval of a scope the
//     Service did not offer is unusable and leaves it pending too.
//  4. Gates no Approver can lift: an automatic approval never grants a
//     scope beyond the proposal, and, when effects are classified
//     (Config.Effects, Config.Compiler, or a Service declaring effects),
//     never a scope whose effect is delete, external, admin or unknown.
//  5. A person, through [Authority.Decide], while the request is pending and
//     unexpired: Approve (optionally narrowing the scope), Deny or Cancel.
//     Terminal states never change.
//
// Wildcards: an approval of "*" is replaced by the explicit list of
// available scopes unless Config.ScopeWildcardAllowed is set.
//
// The proposal, its reasons and the diff appear in the pending issuance
// status only to a poller presenting a fresh holder proof in the
// AgentPass-Proof header, and only about the scopes the Harness requested,
// so the status is no oracle on the user's other entitlements. The
// mission record keeps the basis of the granted scope (scope_basis) and
// the history commits to the proposal's digest.
//
// # The pass
//
// The pass is 256 random bits and only its hash is stored. It is handed
// out in the issuance answer when approved at once, otherwise at the first
// status poll after approval. Every approved poll mints a fresh value and
// retires the previous one, so only the latest value works; a pass lives
// Config.PassTTL (at most five minutes) from the approval. When the
// Harness listed the holder-binding extension (pass.ExtHolderBinding), an
// approved status is only served with a holder proof in the [pass.ProofHeader]
// header: a dpop harness proof with aud = the Authority, htm GET, htu =
// the status URL and aph = hash of the request id (dpop.Key.HarnessProof
// with AgentPass set to the request id). Any other Harness gets the pass
// from the unguessable status URL, as v0.1 defines it, and holder binding
// at redemption makes a leaked pass useless. After the pass was redeemed
// or has expired, the status answers 410.
//
// Validation authenticates the Service by its assertion (keys found only
// through Service discovery of the assertion's iss), then makes ONE store
// call that checks the pass exists, belongs to that Service, is unconsumed
// and unexpired, marks it consumed and creates the authorization. A wrong
// Service gets 403 and does not burn the pass; unknown is 404, consumed
// 409, expired 410. The answer always echoes cnf when the request carried
// harness.cnf, plus authorization_expires_at and harness.id.
//
// Authorization checks and closes answer only the Service that redeemed
// the delegation; every other caller, and every inactive delegation
// (revoked, completed, suspended, expired), gets 404.
//
// # Operators
//
// The approval UI lists [Authority.Pending] and calls [Authority.Decide];
// an admin console lists [Authority.Authorizations] and calls
// [Authority.Revoke], [Authority.Suspend], [Authority.Resume] or
// [Authority.NarrowScope], which Services see at their next check. These
// methods are not exposed over HTTP: the application authenticates its
// operators and records who they are in DecidedBy or by.
//
// Every decision keeps its evidence ([Evidence] on the [Request], copied to
// the [Authorization]): who or which rule decided, when, why, the available
// and granted scopes, the trust tier and whether the task was attested. The
// audit log (Config.Logger) records every issuance, decision, delivery,
// validation, check, close and operator action with the attribute keys
// user, agent, task, harness, service, authorization_id, mission_id,
// outcome, reason and code; it never contains a pass value, a request id,
// an assertion, a proof or a key.
//
// # Events
//
// A Service that advertises the events extension (pass.ExtEvents) learns
// of every change that affects its delegations (revoked, completed,
// suspended, resumed, narrowed, moved to another stage, and the same for
// their descendants, whose scope an ancestor's stage bounds) as an RFC
// 8417 security event token, without waiting for its next check. The
// Service names one delivery method: push (RFC 8935, POST to a receiver on
// its own origin) or poll (RFC 8936, at the poll endpoint with its
// assertion). Each SET is signed and stored in the same store operation
// as the change (the Store must implement [EventStore], as both stores of
// the module do), so a crash loses none. Pushes are made by
// [Authority.RunEventTransmitter], which the application runs (the
// library starts no goroutine); they are retried with backoff for 15
// minutes, one per subject at a time in order, across replicas.
//
// # Rate limits and storage
//
// The unauthenticated endpoints are rate-limited ([RateLimits], on by
// default): issuance per client, network, user, e-mail domain and overall,
// status polling per client, network and overall. A refused request gets
// 429 rate_limited with Retry-After and changes nothing. Clients are told
// apart by remote IP address: behind a reverse proxy, set RateLimits.Key.
// Validation, authorization checks and closes, and a Service's mission
// read and report, are limited per client, network and overall before
// their assertion is parsed, with defaults sized for replicated Services;
// a Harness's mission calls (read, complete, stage, delegate) have
// Harness-sized limits per client, network, overall and mission.
//
// State lives in a [Store]: every transition is one conditional operation,
// so replicas sharing a store (for example PostgreSQL) stay correct. The
// default is [NewMemoryStore]. Any store must pass the conformance suite
// authoritytest.TestStore.
package authority
