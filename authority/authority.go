package authority

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/outbound"
	"github.com/agentpass-go/agentpass/internal/ratelimit"
	"github.com/agentpass-go/agentpass/internal/replayns"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// Defaults and limits of Config.
const (
	// A pass without holder binding works for whoever holds it, so its
	// lifetime stays short.
	defaultPassTTL          = 5 * time.Minute
	maxPassTTL              = 5 * time.Minute
	defaultRequestTTL       = 10 * time.Minute
	maxRequestTTL           = 24 * time.Hour
	defaultAuthorizationTTL = 8 * time.Hour
	maxAuthorizationTTL     = 90 * 24 * time.Hour
	defaultPollAfter        = 2 * time.Second
	// A sub-agent's mission is a narrower copy of its parent's: a few
	// generations and a handful of siblings cover real orchestrators, and
	// a short default life limits what a leaked child key can do.
	defaultMaxDelegationDepth = 3
	maxDelegationDepth        = 16
	defaultMaxChildren        = 8
	maxChildren               = 1000
	defaultChildTTL           = time.Hour
	// defaultScopesTimeout bounds the call to a Service's available_scopes
	// endpoint.
	defaultScopesTimeout = 10 * time.Second
)

// Paths of the endpoints, relative to the path of Config.BaseURL.
const (
	pathConfiguration      = "/configuration"
	pathJWKS               = "/jwks.json"
	pathIssuance           = "/requests"
	pathIssuanceStatus     = "/requests/{id}"
	pathValidate           = "/validate"
	pathAuthorizationCheck = "/authorization-check"
	pathAuthorizationClose = "/authorization-close"
)

// ErrInvalidConfig: Config is not valid; the error says which field.
var ErrInvalidConfig = errors.New("authority: invalid configuration")

// Config configures an Authority. It is read once, by New, and validated
// completely there.
type Config struct {
	// Identifier is the authority identifier, the configuration's
	// "authority" and the iss of the Authority's assertions: an https:// URL
	// without query or fragment; it may have a path
	// ("https://idp.corp.example/agentpass"). It is compared as an exact
	// string, never normalised. Required.
	Identifier string

	// BaseURL is the https:// URL under which the endpoints are served; its
	// path is the prefix of every route (see the Path constants), so the
	// Authority can be mounted under a prefix of a larger server. If empty,
	// Identifier.
	BaseURL string

	// TrustMode is the published trust_mode. Required.
	TrustMode pass.TrustMode

	// Keys signs the Authority's assertions; all its public keys are
	// published at the JWKS endpoint, so rotation never breaks an assertion
	// in flight. Required (see dpop.LoadKeySet, dpop.GenerateKeySet).
	Keys *dpop.KeySet

	// Store keeps requests, passes and authorizations. If nil, a new
	// NewMemoryStore, which suits one process; replicas need a shared
	// store. A store belongs to ONE Authority identifier (its replicas
	// share it): records carry no Authority, so two different Authorities
	// sharing a store would list, decide and revoke each other's requests.
	// Give each Authority its own store (or PostgreSQL schema).
	Store Store

	// Approver decides issuance requests. If nil, Manual: every request
	// stays pending until a person calls Authority.Decide (see OnPending
	// and ApprovalURL).
	Approver Approver

	// AcceptedTiers are the harness trust tiers accepted; a request from
	// any other tier is refused with 403 trust_tier_rejected. If
	// empty, all three tiers (attested, registered, unverified) are
	// accepted, and Rules can still tell them apart.
	AcceptedTiers []dpop.Tier

	// Attesters are the trusted harness attestation issuers with pinned
	// keys or a pinned JWKS URL. An attestation from any other issuer is
	// refused without a network call: fetching keys from a URL the
	// attestation names would let anyone attest themselves. If empty, every
	// attestation is refused, and harnesses reach at most the registered
	// tier.
	Attesters []dpop.Attester

	// RegisteredHarnessKeys maps RFC 7638 thumbprints of holder keys
	// registered out of band to agent ids (the registered tier). May be
	// nil.
	RegisteredHarnessKeys map[string]string

	// PassTTL is how long an approved pass can be redeemed, counted from
	// the approval. If zero, 5 minutes; at most 5 minutes.
	PassTTL time.Duration

	// RequestTTL is how long a request may stay pending before it expires.
	// If zero, 10 minutes; at most 24 hours. It is
	// published as approval.default_ttl_seconds.
	RequestTTL time.Duration

	// AuthorizationTTL is the delegation lifetime, counted from the
	// approval: the authorization_expires_at of validation and
	// authorization-check answers. A Decision may ask for less, never more.
	// If zero, 8 hours; at most 90 days.
	AuthorizationTTL time.Duration

	// MaxDelegationDepth caps the sub-agent generations an approval may
	// grant (Decision.MaxDepth). If zero, 3; at
	// most 16. A mission approved without a MaxDepth
	// cannot delegate at all.
	MaxDelegationDepth int

	// MaxChildren bounds the live child missions of one mission. If zero,
	// 8; at most 1,000.
	MaxChildren int

	// ChildTTL is the life of a child mission whose parent did not ask
	// for one (expires_in), never beyond the parent's. If zero,
	// one hour; at most 90 days.
	ChildTTL time.Duration

	// DelegationPolicy, when set, is asked about every child that is
	// within its parent's bounds; false leaves the child pending for a
	// person to Decide by its mission id, as any request. Nil approves
	// every such child, since it can hold no more than its parent. It is
	// called with copies and must not block for long.
	DelegationPolicy func(ctx context.Context, parent, child *Request) bool

	// PollAfter is the poll_after_ms hint of pending answers. If zero,
	// 2 seconds.
	PollAfter time.Duration

	// AllowServiceAuthorities is the published
	// policy.allow_service_authorities. Only an Enterprise Authority may set
	// it; if nil the member is omitted, which means true.
	AllowServiceAuthorities *bool

	// ScopeWildcardAllowed lets an approval grant "*" as such. If false
	// (the default), "*" in an approval is replaced by the explicit list of
	// available scopes.
	ScopeWildcardAllowed bool

	// Compiler, if set, proposes a minimal scope for each new request's
	// task, from the scopes the Service offers. The proposal only informs
	// the decision: ScopePolicy and the Approver decide, and a compiler
	// error or timeout leaves the request to a person. If nil, requests
	// are decided without a proposal, as in v0.1.
	Compiler Compiler

	// CompileTimeout bounds one compilation. If zero,
	// 2 s; at most 30 s.
	CompileTimeout time.Duration

	// Effects classifies the Services' scopes by name suffix. A scope's
	// effect is the higher of the Service's declared effect and this
	// classification, so a Service cannot lower its own gate. When effects
	// are classified (Effects or Compiler set, or a Service declares one),
	// no automatic approval grants a scope above write: delete, external,
	// admin and unclassified scopes need a person. The same effects set the
	// floors of stage gates: a stage adding only reads may be entered
	// automatically, a write needs at least policy, anything else a
	// person (with Effects nil and nothing declared, every stage that adds
	// a scope needs a person). May be nil.
	//
	// A scope these rules do not classify takes the Service's declared
	// effect: the Service knows what its API does. To classify by your
	// rules alone, add the catch-all {"": EffectUnknown}; a declaration
	// then raises a scope your rules classify and never lowers one they
	// do not. With no rules, no Compiler and no declared effect, the
	// effect gate is off and rules approve as in v0.1, since nothing
	// tells one scope from another.
	Effects EffectRules

	// ScopePolicy weighs requested scopes against the proposal; the zero
	// value replaces "*" with the proposal and leaves requests beyond it
	// to a person.
	ScopePolicy ScopePolicy

	// RequireEnterpriseDomain makes issuance refuse a user whose e-mail
	// domain's _agentpass TXT record does not point to ConfigurationURL,
	// so an Enterprise Authority cannot approve for users of domains it
	// does not serve. If nil, true for TrustEnterprise and false
	// otherwise; true is an error for other trust modes.
	RequireEnterpriseDomain *bool

	// Discovery finds Services (issuance and assertion checks) and
	// enterprise records. If nil, discovery.New with HTTPClient,
	// WrapTransport, InsecureAllowPrivateNetworks, Now and Logger and the
	// system's resolvers (/etc/resolv.conf).
	Discovery *discovery.Client

	// HTTPClient calls the Services' available_scopes endpoints. It is copied,
	// never modified; its Timeout (10 seconds if zero) and Transport
	// are used, and each call is also bounded by 10 seconds. The copy
	// follows no redirect, keeps no cookies, requires TLS 1.2 with verified
	// certificates (InsecureSkipVerify is refused), keeps up to 64 idle
	// connections per host unless the Transport says otherwise, and refuses
	// non-public destinations (see InsecureAllowPrivateNetworks). The Transport
	// may be nil (the default transport without proxy: a library reads no
	// environment variables), an *http.Transport (cloned), or a wrapper with
	// the methods Unwrap() http.RoundTripper and Rewrap(http.RoundTripper)
	// http.RoundTripper, rebuilt around a hardened copy of what it wraps. Any
	// other RoundTripper cannot be given the address check and makes New fail
	// unless InsecureAllowPrivateNetworks is set; instrument with WrapTransport
	// instead. A Transport with a Proxy, or with its own dialer (DialContext,
	// DialTLSContext, Dial, DialTLS), is refused too unless
	// InsecureAllowPrivateNetworks is set: the proxy, or a tunnelling dialer
	// (SOCKS5, CONNECT, SSH), would reach destinations unchecked while its
	// connections show a public address.
	HTTPClient *http.Client

	// WrapTransport, when set, wraps the transport built from HTTPClient
	// after its checks are installed, and is also given to the default
	// Discovery: the way to instrument calls (for example with otelhttp)
	// without losing the checks. It must not return nil.
	WrapTransport func(http.RoundTripper) http.RoundTripper

	// InsecureAllowPrivateNetworks allows available_scopes calls to
	// loopback, private and other non-public addresses. Without it such
	// destinations are refused after name resolution and before
	// connecting, because the URL comes from a configuration chosen by
	// whoever controls the requested service.origin. It also lets
	// HTTPClient's Transport be any RoundTripper, used as given. It applies
	// to the default Discovery too, not to a Discovery given in Config.
	// Only tests and local development networks need it.
	InsecureAllowPrivateNetworks bool

	// RateLimits bounds the issuance and status endpoints, and the
	// endpoints Services and Harnesses call with an assertion or proof, per
	// client, per network and overall, and issuance per user and per e-mail
	// domain. The zero value is on with the defaults documented on
	// RateLimits; set Key behind a reverse proxy.
	RateLimits RateLimits

	// RequireHardenedProofs refuses issuance requests whose Harness does not
	// list the holder-binding extension (pass.ExtHolderBinding) in
	// harness.extensions, and so refuses plain v0.1 Harnesses. If false
	// (the default), such a request gets v0.1 behaviour: its approved status
	// is served to whoever polls its unguessable status URL, and its pass
	// is redeemable with a plain v0.1 proof; a request that lists the
	// extension is always held to it, so no one can downgrade it.
	RequireHardenedProofs bool

	// ReplayCache records the holder proofs of status reads and the jti of
	// every Service assertion whose request succeeded, so neither can be
	// used twice; each kind under its own "authority:" prefix. If nil, one
	// in-memory cache per kind, each sized for 10,000 verifications a
	// second over the longest lifetime; replicas should share one
	// (dpop/dpoppg), or a proof or assertion replayed at another replica
	// goes unnoticed.
	ReplayCache dpop.ReplayCache

	// Now is the clock. If nil, time.Now.
	Now func() time.Time

	// Logger receives the audit log. If nil, nothing is logged. Pass
	// values, assertions, proofs and keys are never logged.
	Logger *slog.Logger

	// TracerProvider and MeterProvider receive the Authority's spans and
	// metrics (agentpass.*), which carry no pass, token, key or e-mail
	// address. If nil, otel's global providers, which record nothing until
	// the application installs an SDK. Outbound calls are traced by
	// instrumenting WrapTransport.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider

	// OnPending, if set, is called after a request was stored as pending,
	// so an application can notify a person (mail, chat, page). It runs
	// synchronously in the issuance request: hand slow work to a
	// goroutine.
	OnPending func(ctx context.Context, r Request)

	// ValidateDecision, if set, is asked about every decision before it is
	// recorded, whichever UI, API or policy made it: Decide, DecideStage,
	// an Approver's automatic decision at issuance or at a stage gate, and
	// a delegation approved within its parent's grant. r is a copy of the
	// request (for a stage move, PendingStage names the stage and d.Scope
	// is its scope); d carries the scope that would be granted. An error
	// refuses the decision: the request (or the stage move) stays pending
	// for a person, and Decide and DecideStage return an error matching
	// ErrDecisionRefused that wraps it. It runs in the request path: keep
	// it fast. OnPending and the hooks see the request as it is stored.
	ValidateDecision func(ctx context.Context, r *Request, d Decision) error

	// ApprovalURL, if set, returns the page where a person can approve the
	// request of the mission with the given id (never the request id,
	// which is the Harness's polling secret); it is shown to the Harness
	// as links.approval while the request is pending.
	ApprovalURL func(missionID string) string

	// DiscloseApprover shows who approved a mission (approval.decided_by
	// and the history's human ids) in the Harness's view of it. If false,
	// only operators see approver identities.
	DiscloseApprover bool

	// OnObservation, if set, is called after each observation a Service
	// reports about one of its delegations was recorded in the mission's
	// history, with the operator view of the mission (without history
	// entries; History.Count counts them). Its answer may suspend or revoke
	// the mission; ObserveRecord (the default when nil) only records. It
	// runs synchronously in the report request: keep it fast.
	OnObservation func(ctx context.Context, m *pass.MissionRecord, o pass.Observation) ObservationAction

	// TransitionTTL is how long a forward stage move waits for a person
	// (Authority.DecideStage) before it lapses and the stage stays. If
	// zero, 10 minutes; at most 24 hours.
	TransitionTTL time.Duration
}

// Default sizes of the per-kind replay caches: 10,000 a second for the
// longest a verifier keeps a pair (a lifetime of dpop.DefaultMaxLifetime
// plus the skew on each side).
const (
	replayLifetime           = dpop.DefaultMaxLifetime + 2*dpop.DefaultSkew
	statusProofReplayEntries = 10_000 * int(replayLifetime/time.Second)
	assertionReplayEntries   = 10_000 * int(replayLifetime/time.Second)
)

// Authority is an AgentPass Authority: an http.Handler serving the
// configuration, JWKS, issuance, issuance status, validation, authorization
// check and authorization close endpoints and the mission extension's read,
// complete and report endpoints and the delegation extension's delegate
// endpoint, plus the operator API (Decide,
// Revoke, Suspend, Resume, NarrowScope, listings). It is safe for
// concurrent use.
type Authority struct {
	id        string
	base      string // BaseURL without trailing slash
	mode      pass.TrustMode
	keys      *dpop.KeySet
	store     Store
	approver  Approver
	tiers     []dpop.Tier
	attest    *dpop.AttestationVerifier
	passTTL   time.Duration
	reqTTL    time.Duration
	authzTTL  time.Duration
	pollAfter time.Duration
	childTTL  time.Duration

	compiler       Compiler
	compileTimeout time.Duration
	effects        EffectRules
	policy         ScopePolicy

	maxDepth    int // maxDelegationDepth
	maxChildren int // maxChildren
	wildcard    bool
	domainGate  bool
	hardened    bool // RequireHardenedProofs
	disc        *discovery.Client
	client      *http.Client
	replay      dpop.ReplayCache
	verifier    *assertion.Verifier
	proofs      *dpop.ProofVerifier // holder proofs of the status endpoint
	now         func() time.Time
	log         *slog.Logger
	tel         *telemetry.T
	onPending   func(context.Context, Request)
	validateDec func(context.Context, *Request, Decision) error
	hooks       hookState
	approval    func(string) string
	limits      limiters

	discloseApprover bool
	delegationPolicy func(ctx context.Context, parent, child *Request) bool
	// spawns counts child creations per root mission (see 60).
	spawns        *ratelimit.Limiter
	onObservation func(context.Context, *pass.MissionRecord, pass.Observation) ObservationAction
	transitionTTL time.Duration // Config.TransitionTTL

	tx         *transmitter // nil when the Store keeps no outbox
	config     pass.AuthorityConfiguration
	configJSON []byte
	mux        *http.ServeMux
}

// New validates cfg and returns an Authority.
func New(cfg Config) (*Authority, error) {
	a := &Authority{
		id: cfg.Identifier, mode: cfg.TrustMode, keys: cfg.Keys, store: cfg.Store, approver: cfg.Approver,
		wildcard: cfg.ScopeWildcardAllowed, hardened: cfg.RequireHardenedProofs, disc: cfg.Discovery, client: cfg.HTTPClient, replay: cfg.ReplayCache,
		now: cfg.Now, log: cfg.Logger, onPending: cfg.OnPending, approval: cfg.ApprovalURL,
		discloseApprover: cfg.DiscloseApprover, onObservation: cfg.OnObservation,
	}
	a.validateDec = cfg.ValidateDecision
	if err := checkIdentifier("Identifier", cfg.Identifier); err != nil {
		return nil, err
	}
	base := cfg.BaseURL
	if base == "" {
		base = cfg.Identifier
	}
	if err := checkIdentifier("BaseURL", base); err != nil {
		return nil, err
	}
	a.base = strings.TrimSuffix(base, "/")
	prefix := mustPath(a.base)
	for _, c := range prefix {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~/", c)) {
			return nil, fmt.Errorf("%w: BaseURL path may only contain letters, digits and -._~/", ErrInvalidConfig)
		}
	}
	if !cfg.TrustMode.Valid() {
		return nil, fmt.Errorf("%w: TrustMode must be enterprise, federated or service", ErrInvalidConfig)
	}
	if cfg.Keys == nil || cfg.Keys.Current() == nil {
		return nil, fmt.Errorf("%w: Keys is required and must hold a current signing key", ErrInvalidConfig)
	}
	if a.store == nil {
		a.store = NewMemoryStore()
	}
	if a.approver == nil {
		a.approver = Manual{}
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if a.tel, err = telemetry.New("authority", cfg.TracerProvider, cfg.MeterProvider); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	// agentpass.pending counts up to one listing page (1,000 requests): a
	// collection must stay cheap however large the backlog.
	if err := a.tel.Pending(func(ctx context.Context) (int64, error) {
		rs, err := a.store.PendingRequests(ctx, ListOptions{Now: a.now(), Limit: 1000})
		return int64(len(rs)), err
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	// The available_scopes URL comes from a configuration published by
	// whoever controls the requested service.origin: the outbound policy
	// refuses redirects and non-public destinations.
	if a.client, err = outbound.New(outbound.Policy{
		Role:                 "authority",
		Client:               cfg.HTTPClient,
		WrapTransport:        cfg.WrapTransport,
		AllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks,
		Timeout:              defaultScopesTimeout,
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	// SETs go to receivers each Service names on its own origin: the same
	// outbound policy, with no redirect and a short timeout.
	if es, ok := a.store.(EventStore); ok {
		push, err := outbound.New(outbound.Policy{
			Role: "authority", Client: cfg.HTTPClient, WrapTransport: cfg.WrapTransport,
			AllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks, Timeout: pushTimeout,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if a.tx, err = newTransmitter(es, push); err != nil {
			return nil, err
		}
		// Every transition, whichever code path commits it, queues its
		// SETs in the same step.
		a.store = eventStore{Store: a.store, build: a.eventFor, refused: a.eventRefused}
	}
	if a.passTTL, err = duration("PassTTL", cfg.PassTTL, defaultPassTTL, maxPassTTL); err != nil {
		return nil, err
	}
	if a.reqTTL, err = duration("RequestTTL", cfg.RequestTTL, defaultRequestTTL, maxRequestTTL); err != nil {
		return nil, err
	}
	if a.transitionTTL, err = duration("TransitionTTL", cfg.TransitionTTL, defaultTransitionTTL, maxTransitionTTL); err != nil {
		return nil, err
	}
	if a.authzTTL, err = duration("AuthorizationTTL", cfg.AuthorizationTTL, defaultAuthorizationTTL, maxAuthorizationTTL); err != nil {
		return nil, err
	}
	if a.pollAfter, err = duration("PollAfter", cfg.PollAfter, defaultPollAfter, time.Hour); err != nil {
		return nil, err
	}
	a.delegationPolicy = cfg.DelegationPolicy
	if a.compileTimeout, err = duration("CompileTimeout", cfg.CompileTimeout, defaultCompileTimeout, 30*time.Second); err != nil {
		return nil, err
	}
	if err := cfg.ScopePolicy.check(); err != nil {
		return nil, err
	}
	for suffix, e := range cfg.Effects {
		// A typo would classify scopes as unknown without a word.
		if normalEffect(e) != e {
			return nil, fmt.Errorf("%w: Effects[%q] is %q, not read, write, delete, external or admin", ErrInvalidConfig, suffix, e)
		}
	}
	a.compiler, a.effects, a.policy = cfg.Compiler, maps.Clone(cfg.Effects), cfg.ScopePolicy
	if a.policy.Wildcard == "" {
		a.policy.Wildcard = WildcardReplace
	}
	if a.policy.OverScope == "" {
		a.policy.OverScope = OverScopeHuman
	}
	if a.childTTL, err = duration("ChildTTL", cfg.ChildTTL, defaultChildTTL, maxAuthorizationTTL); err != nil {
		return nil, err
	}
	if a.maxDepth, err = count("maxDelegationDepth", cfg.MaxDelegationDepth, defaultMaxDelegationDepth, maxDelegationDepth); err != nil {
		return nil, err
	}
	if a.maxChildren, err = count("maxChildren", cfg.MaxChildren, defaultMaxChildren, maxChildren); err != nil {
		return nil, err
	}
	spawn := ratelimit.Limit{Client: ratelimit.Rate{PerSecond: maxSpawnsPerMinute / 60.0, Burst: maxSpawnsPerMinute}, Network: ratelimit.Rate{PerSecond: -1}}
	if a.spawns, err = ratelimit.New(spawn, spawn, maxSpawnRoots, a.now); err != nil {
		return nil, err
	}
	a.tiers = slices.Clone(cfg.AcceptedTiers)
	if len(a.tiers) == 0 {
		a.tiers = []dpop.Tier{dpop.TierAttested, dpop.TierRegistered, dpop.TierUnverified}
	}
	for _, t := range a.tiers {
		if t != dpop.TierAttested && t != dpop.TierRegistered && t != dpop.TierUnverified {
			return nil, fmt.Errorf("%w: AcceptedTiers: unknown tier %q", ErrInvalidConfig, t)
		}
	}
	if cfg.AllowServiceAuthorities != nil && cfg.TrustMode != pass.TrustEnterprise {
		return nil, fmt.Errorf("%w: AllowServiceAuthorities is only meaningful for an enterprise Authority", ErrInvalidConfig)
	}
	a.domainGate = cfg.TrustMode == pass.TrustEnterprise
	if cfg.RequireEnterpriseDomain != nil {
		a.domainGate = *cfg.RequireEnterpriseDomain
		if a.domainGate && cfg.TrustMode != pass.TrustEnterprise {
			return nil, fmt.Errorf("%w: RequireEnterpriseDomain needs TrustMode enterprise", ErrInvalidConfig)
		}
	}
	registered := map[string]string{}
	for k, v := range cfg.RegisteredHarnessKeys {
		if k == "" || v == "" {
			return nil, fmt.Errorf("%w: RegisteredHarnessKeys: empty thumbprint or agent id", ErrInvalidConfig)
		}
		registered[k] = v
	}
	if a.disc == nil {
		if a.disc, err = discovery.New(discovery.Config{
			HTTPClient: cfg.HTTPClient, WrapTransport: cfg.WrapTransport,
			InsecureAllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks,
			Now:                          cfg.Now, Logger: cfg.Logger,
			TracerProvider: cfg.TracerProvider, MeterProvider: cfg.MeterProvider,
		}); err != nil {
			return nil, fmt.Errorf("%w: Discovery: %w", ErrInvalidConfig, err)
		}
	}
	if a.attest, err = dpop.NewAttestationVerifier(dpop.AttestationVerifierConfig{
		Attesters: cfg.Attesters, Fetcher: a.disc, Registered: registered, Now: a.now,
	}); err != nil {
		return nil, fmt.Errorf("%w: Attesters: %w", ErrInvalidConfig, err)
	}
	// Each kind of jti has its own prefix and, by default, its own cache:
	// no Harness id can name another kind's key, and a flood of one kind
	// cannot fill the other. (The assertion verifier adds "assertion:".)
	caches := replayns.New(a.replay, replayRole, a.now, map[string]int{
		"harness-proof:": statusProofReplayEntries, "": assertionReplayEntries})
	if a.verifier, err = assertion.NewVerifier(assertion.Config{Keys: a.disc, Audience: a.id, Replay: caches[""], Now: a.now}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if a.proofs, err = dpop.NewProofVerifier(dpop.ProofVerifierConfig{Audience: a.id, Replay: caches["harness-proof:"], Now: a.now}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if a.limits, err = newLimiters(cfg.RateLimits, a.reqTTL, a.now); err != nil {
		return nil, err
	}

	a.config = pass.AuthorityConfiguration{
		Version:   "0.1",
		Authority: a.id,
		TrustMode: a.mode,
		JWKSURI:   a.base + pathJWKS,
		Endpoints: pass.AuthorityEndpoints{
			Issuance:           a.base + pathIssuance,
			IssuanceStatus:     a.base + pathIssuanceStatus,
			Validate:           a.base + pathValidate,
			AuthorizationCheck: a.base + pathAuthorizationCheck,
			AuthorizationClose: a.base + pathAuthorizationClose,
		},
		Approval: &pass.ApprovalHints{Modes: []string{"poll"}, DefaultTTLSeconds: int(a.reqTTL / time.Second)},
	}
	// Harnesses learn here that this Authority releases approved passes to
	// status holder proofs and tells Services which passes need hardened
	// proofs.
	if a.config.Extensions, err = a.config.Extensions.With(pass.ExtHolderBinding, pass.Extension{Version: "1.0"}); err != nil {
		return nil, fmt.Errorf("authority: holder-binding extension: %w", err)
	}
	// Services and Harnesses learn here where to read, complete and report
	// on missions.
	if a.config.Extensions, err = a.config.Extensions.With(pass.ExtMission, pass.Extension{Version: "1.0", Endpoints: map[string]string{
		"mission": a.base + pathMission, "mission_complete": a.base + pathMissionComplete, "mission_report": a.base + pathMissionReport,
	}}); err != nil {
		return nil, fmt.Errorf("authority: advertising extensions: %w", err)
	}
	// Harnesses learn here where to ask for the next stage of a mission.
	if a.config.Extensions, err = a.config.Extensions.With(pass.ExtStages, pass.Extension{Version: "1.0", Endpoints: map[string]string{
		"mission_stage": a.base + pathMissionStage,
	}}); err != nil {
		return nil, fmt.Errorf("authority: stages extension: %w", err)
	}
	// Harnesses learn here where to delegate to sub-agents, and how deep
	// and wide a delegation tree may grow.
	del, err := pass.Extension{Version: "1.0", Endpoints: map[string]string{"delegate": a.base + pathDelegate}}.WithMember("max_depth", a.maxDepth)
	if err == nil {
		del, err = del.WithMember("max_children", a.maxChildren)
	}
	if err == nil {
		a.config.Extensions, err = a.config.Extensions.With(pass.ExtDelegation, del)
	}
	if err != nil {
		return nil, fmt.Errorf("authority: delegation extension: %w", err)
	}
	// Services learn here how to receive SETs about the missions they
	// redeemed.
	if a.tx != nil {
		ev, err := a.eventsExtension()
		if err == nil {
			a.config.Extensions, err = a.config.Extensions.With(pass.ExtEvents, ev)
		}
		if err != nil {
			return nil, fmt.Errorf("authority: events extension: %w", err)
		}
	}
	// Harnesses learn here whether "*" is replaced, refused or sent to a
	// person, before deciding what to request.
	if a.compiler != nil {
		comp, err := pass.Extension{Version: "1.0"}.WithMember("wildcard", string(a.policy.Wildcard))
		if err == nil {
			a.config.Extensions, err = a.config.Extensions.With(pass.ExtCompile, comp)
		}
		if err != nil {
			return nil, fmt.Errorf("authority: compile extension: %w", err)
		}
	}
	if cfg.AllowServiceAuthorities != nil {
		v := *cfg.AllowServiceAuthorities
		a.config.Policy = &pass.AuthorityPolicy{AllowServiceAuthorities: &v}
	}
	if err := a.config.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if a.configJSON, err = json.Marshal(a.config); err != nil {
		return nil, fmt.Errorf("authority: encoding configuration: %w", err)
	}
	a.mux = a.routes(prefix)
	return a, nil
}

func checkIdentifier(field, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalidConfig, field)
	}
	if err := pass.CheckHTTPSURL(s); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidConfig, field, err)
	}
	if u, _ := url.Parse(s); u.RawQuery != "" || u.ForceQuery {
		return fmt.Errorf("%w: %s must not have a query", ErrInvalidConfig, field)
	}
	return nil
}

func mustPath(base string) string {
	u, _ := url.Parse(base)
	return strings.TrimSuffix(u.EscapedPath(), "/")
}

func duration(field string, v, def, maxV time.Duration) (time.Duration, error) {
	switch {
	case v < 0:
		return 0, fmt.Errorf("%w: %s must not be negative", ErrInvalidConfig, field)
	case v == 0:
		return def, nil
	case v > maxV:
		return 0, fmt.Errorf("%w: %s must be at most %s", ErrInvalidConfig, field, maxV)
	}
	return v, nil
}

// ConfigurationURL returns the Authority Configuration URL, where the
// configuration document is served: the value for an enterprise _agentpass
// TXT record or a Service's trust configuration.
func (a *Authority) ConfigurationURL() string { return a.base + pathConfiguration }

// Identifier returns the authority identifier.
func (a *Authority) Identifier() string { return a.id }

// Configuration returns a copy of the configuration document served.
func (a *Authority) Configuration() pass.AuthorityConfiguration {
	c := a.config
	if c.Policy != nil {
		p := *c.Policy
		c.Policy = &p
	}
	if c.Approval != nil {
		h := *c.Approval
		h.Modes = slices.Clone(h.Modes)
		c.Approval = &h
	}
	return c
}

// StatusURL returns the issuance status URL of request id.
func (a *Authority) StatusURL(id string) string { return a.config.StatusURL(id) }

// ServeHTTP serves the Authority's endpoints.
func (a *Authority) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.ready() != nil {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeInternal, "authority not configured"))
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *Authority) routes(p string) *http.ServeMux {
	mux := http.NewServeMux()
	route := func(method, path string, h http.HandlerFunc) {
		lat := telemetry.NoLatency
		if path == pathValidate {
			lat = telemetry.ValidationLatency
		}
		mux.HandleFunc(method+" "+p+path, a.tel.Handler(endpointName(path), lat, h))
		allow := method
		if method == http.MethodGet {
			allow = "GET, HEAD"
		}
		mux.HandleFunc(p+path, func(w http.ResponseWriter, r *http.Request) { httpx.MethodNotAllowed(w, allow) })
	}
	route(http.MethodGet, pathConfiguration, a.serveConfiguration)
	route(http.MethodGet, pathJWKS, a.serveJWKS)
	route(http.MethodPost, pathIssuance, a.serveIssuance)
	route(http.MethodGet, pathIssuanceStatus, a.serveStatus)
	route(http.MethodPost, pathValidate, a.serveValidate)
	route(http.MethodPost, pathAuthorizationCheck, a.serveCheck)
	route(http.MethodPost, pathAuthorizationClose, a.serveClose)
	route(http.MethodPost, pathMission, a.serveMission)
	route(http.MethodPost, pathMissionComplete, a.serveMissionComplete)
	route(http.MethodPost, pathMissionReport, a.serveMissionReport)
	route(http.MethodPost, pathMissionStage, a.serveMissionStage)
	route(http.MethodPost, pathDelegate, a.serveDelegate)
	route(http.MethodPost, pathEventsPoll, a.servePoll)
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeNotFound, "no such endpoint"))
	})
	return mux
}

// endpointName names an endpoint in spans and metrics: its path without
// parameters ("/missions/read" is "missions.read").
func endpointName(path string) string {
	switch path {
	case pathIssuance:
		return "issuance"
	case pathIssuanceStatus:
		return "issuance_status"
	case pathJWKS:
		return "jwks"
	}
	return strings.NewReplacer("/", ".", "-", "_").Replace(strings.TrimPrefix(path, "/"))
}

// serveConfiguration serves the configuration document.
func (a *Authority) serveConfiguration(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(a.configJSON)
}

// serveJWKS serves the public keys of Keys: the current signing key and
// the retiring ones, so assertions signed just before a rotation verify.
func (a *Authority) serveJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpx.WriteJSON(w, http.StatusOK, a.keys.JWKS())
}

// count validates an integer field of Config: zero means def, negative or
// above maxV is an error.
func count(field string, v, def, maxV int) (int, error) {
	switch {
	case v < 0:
		return 0, fmt.Errorf("%w: %s must not be negative", ErrInvalidConfig, field)
	case v == 0:
		return def, nil
	case v > maxV:
		return 0, fmt.Errorf("%w: %s must be at most %d", ErrInvalidConfig, field, maxV)
	}
	return v, nil
}
