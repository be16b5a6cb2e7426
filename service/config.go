package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/netguard"
	"github.com/agentpass-go/agentpass/internal/outbound"
	"github.com/agentpass-go/agentpass/pass"
)

// Defaults and limits of [Config].
const (
	defaultTokenTTL      = time.Hour
	defaultSessionTTL    = time.Hour
	defaultInitTTL       = 60 * time.Second
	maxInitTTL           = 5 * time.Minute
	defaultCheckInterval = 30 * time.Second
	// maxCheckInterval bounds CheckInterval: a revocation at the Authority
	// must take effect within a minute.
	maxCheckInterval    = 60 * time.Second
	defaultCheckTimeout = 5 * time.Second
	// maxUnreachableGrace bounds UnreachableGrace: while the Authority
	// cannot be reached, a revocation cannot reach the Service either, so
	// the grace is how long a revoked delegation may keep working.
	maxUnreachableGrace = 5 * time.Minute
	defaultCallTimeout  = 10 * time.Second

	defaultCloseRetryInterval = 30 * time.Second
	defaultPrefix             = "/agentpass"
	// configurationMaxAge is the Cache-Control max-age of the
	// configuration and JWKS documents: clients may cache them, but only
	// briefly, so a key rotation or trust change reaches them soon.
	configurationMaxAge = 5 * time.Minute
	// SessionCookie is the name of the browser-session cookie. The
	// __Host- prefix makes browsers require Secure, Path=/ and no Domain.
	SessionCookie = "__Host-agentpass_session"
	// InitTokenField is the form field that carries the initialization
	// token in the form-POST construction. (The plain v0.1 GET construction
	// carries it in the "token" query parameter instead.)
	InitTokenField = "initialization_token"
)

// Config configures a [Service]. Origin, Keys and Scopes are required;
// every other field has the default its comment states. The Service keeps
// a copy: changing a Config after New has no effect (slices and callbacks
// are shared, so do not mutate those).
type Config struct {
	// Origin is the Service origin, "https://host[:port]", the service.origin
	// of the configuration and the audience of assertions and harness
	// proofs. Required.
	Origin string

	// Name is the human-readable service.name. Optional.
	Name string

	// BaseURL is where the Service's handler is reachable: the endpoint
	// URLs are BaseURL followed by the Paths. It must have the same origin
	// as Origin (the session cookie is set by the initialization endpoint
	// for the application's host) and may carry a path when the handler is
	// mounted under one with http.StripPrefix. If empty, Origin.
	BaseURL string

	// Paths are the endpoint paths the handler serves. Empty fields take
	// the defaults documented on [Paths].
	Paths Paths

	// Keys signs the Service's assertions to Authorities and is published
	// as the JWKS. Required.
	Keys *dpop.KeySet

	// ServiceAuthority is this Service's own Authority (trust_mode
	// "service"), published as trust.service_authority. Optional.
	ServiceAuthority *pass.AuthorityRef

	// TrustedFederated lists the Federated Authorities the Service trusts,
	// published as trust.trusted_federated_authorities. Only these are
	// ever returned or accepted: a Federated Authority approves for every
	// user without an Enterprise Authority, so it is trusted only when
	// named here. Optional.
	TrustedFederated []pass.AuthorityRef

	// AuthorityChoice says which Authority resolution names when policy
	// allows more than one. The zero value names the Enterprise or
	// Federated Authorities, and the Service Authority only when it is the
	// only choice.
	AuthorityChoice AuthorityChoice

	// FederatedPolicy narrows the trusted Federated Authorities for one
	// user (for example by plan or by tenant). It receives a copy of
	// TrustedFederated and returns the entries to offer; entries not in
	// TrustedFederated are ignored. It is consulted at resolution,
	// available-scopes and redemption alike. If nil, every trusted entry is
	// offered.
	FederatedPolicy func(ctx context.Context, email string, options []pass.AuthorityRef) []pass.AuthorityRef

	// Scopes are the scopes the Service defines. Approved scopes outside
	// this list are refused at redemption, not ignored: they show that the
	// Authority and the Service disagree about what was approved. Required,
	// non-empty, names unique and not "*".
	Scopes []pass.ScopeInfo

	// AvailableScopes answers the available-scopes endpoint for a user,
	// agent and task, after the calling Authority was authenticated. It
	// should return a subset of Scopes; others are dropped. If nil, Scopes
	// restricted to UserScopes (when set).
	AvailableScopes func(ctx context.Context, q ScopeQuery) ([]pass.ScopeInfo, error)

	// UserScopes returns the scopes the user holds at the Service. An
	// approved "*" is expanded to them, and no credential ever
	// carries a scope outside them. If nil, every scope of Scopes.
	UserScopes func(ctx context.Context, email string) ([]string, error)

	// OnDelegation is called once per successful redemption, after every
	// check and before any credential is minted: the place to find or
	// create the user's account (automated signup). An error rejects the
	// redemption; a *pass.Error is sent as is, any other error as 403
	// delegation_rejected (its text is logged, not sent). If nil, every
	// delegation is accepted.
	OnDelegation func(ctx context.Context, d *Delegation) error

	// AllowedDestinations reports whether a browser session may be
	// redirected to dest, an absolute https URL from the Authority's
	// validation response (never from the request, which would make the
	// Service an open redirect). If nil, only URLs with the same origin as
	// Origin are allowed.
	AllowedDestinations func(dest string) bool

	// DefaultDestination is the path (on Origin) a new browser session is
	// redirected to when the Authority names no destination. If empty, "/".
	DefaultDestination string

	// Fallback serves the requests the middleware does not claim: those
	// without the browser-session cookie whose Authorization header is
	// not a token this Service issued (every such token starts with
	// "apt_", so another scheme or another bearer token, such as the
	// application's own API key, is not ours), and those with no
	// credential at all. It lets one route accept agents and the
	// application's own authentication; it must authenticate the request
	// itself. A token with the prefix is always decided here: an unknown,
	// expired or revoked one is refused, never handed on. If nil, such
	// requests are answered 401.
	Fallback http.Handler

	// Store keeps tokens, sessions, initialization tokens and the
	// delegation records. If nil, a new [MemoryStore].
	Store Store

	// ReplayCache records the jti of every harness proof, DPoP proof and
	// Authority assertion the Service accepts, so none is accepted twice.
	// The Service prefixes each issuer with its kind, so one cache may
	// serve all three and be shared with an Authority (dpop/dpoppg).
	// Replicas must share one, or a proof replayed at another replica goes
	// unnoticed. If nil, one dpop.MemoryReplayCache per kind, each sized
	// as rate × the 7 minutes a pair is kept: 10,000 DPoP-bound requests,
	// 1,000 redemptions and 1,000 available-scopes calls a second; a flood
	// of one kind so never refuses the others. With a servicepg Store, the
	// dpoppg cache on the Store's own pool saves a round trip per
	// redemption: the harness proof's jti is recorded in the statement
	// that stores the credential (see [ProofRecordingStore]).
	ReplayCache dpop.ReplayCache

	// Discovery performs enterprise discovery and fetches Authority
	// configurations and keys. If nil, discovery.New with HTTPClient,
	// WrapTransport, InsecureAllowPrivateNetworks, Now and Logger (and the
	// system's resolvers).
	Discovery *discovery.Client

	// HTTPClient calls Authorities' validate, authorization-check and close
	// endpoints. It is copied, never modified; its Timeout (10 seconds
	// if zero) and Transport are used. The copy follows no redirect (a 3xx
	// answer is an error), keeps no cookies, requires TLS 1.2 with verified
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

	// Now is the clock. If nil, time.Now.
	Now func() time.Time

	// Logger receives the audit log (one record per redemption,
	// initialization and rejection; never a secret). If nil, nothing is
	// logged.
	Logger *slog.Logger

	// TracerProvider and MeterProvider receive the Service's spans and
	// metrics (agentpass.*), which carry no pass, token, key or e-mail
	// address. If nil, otel's global providers, which record nothing until
	// the application installs an SDK. Outbound calls are traced by
	// instrumenting WrapTransport.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider

	// TokenTTL is the lifetime of a bearer token; a token never outlives
	// authorization_expires_at. If zero, one hour.
	TokenTTL time.Duration

	// SessionTTL is the lifetime of a browser session, also bounded by
	// authorization_expires_at. If zero, one hour.
	SessionTTL time.Duration

	// InitTTL is the lifetime of an initialization token; keep it short,
	// as anyone holding the URL can open the agent's session in another
	// browser. If zero, 60 seconds; at most 5 minutes.
	InitTTL time.Duration

	// CheckInterval is how old a successful authorization check may be
	// before a request triggers a new one: the longest a revocation at the
	// Authority goes unnoticed. If zero,
	// 30 seconds; at most 60 seconds.
	CheckInterval time.Duration

	// CheckTimeout bounds one authorization check call. If zero,
	// 5 seconds.
	CheckTimeout time.Duration

	// UnreachableGrace lets requests through for this long past
	// CheckInterval while the Authority cannot be reached, and so while a
	// revocation cannot reach the Service. If
	// zero, an unreachable Authority rejects requests at once (fail
	// closed); at most 5 minutes. A 404 from the Authority is
	// never graced.
	UnreachableGrace time.Duration

	// InsecureAllowPrivateNetworks allows calls to Authorities at
	// loopback, private and other non-public addresses. Without it such
	// destinations are refused after name resolution and before
	// connecting: an Enterprise Authority's endpoints are chosen by
	// whoever controls a user's e-mail domain. It also lets HTTPClient's
	// Transport be any RoundTripper, used as given. It applies to the
	// default Discovery too, not to a Discovery given in Config. Only tests
	// and local development networks need it.
	InsecureAllowPrivateNetworks bool

	// RateLimits bounds every endpoint but the configuration and the
	// JWKS, per client, per network and overall. The zero value is on with
	// the defaults documented on [RateLimits]; set Key behind a reverse
	// proxy.
	RateLimits RateLimits

	// RequireHardenedProofs refuses every redemption whose harness proof
	// lacks htm, htu or aph, and every redemption without a harness proof,
	// before the pass is sent to the Authority: plain v0.1 Harnesses are
	// then refused and keep their passes. If false (the default), a pass
	// is held to the hardened proof exactly when its Authority says its
	// Harness asked for it (the holder-binding extension), and a plain
	// v0.1 Harness redeems with a v0.1 proof.
	RequireHardenedProofs bool

	// CloseRetryInterval is how often Run retries closing delegations the
	// Service refused after their pass was consumed. If zero, 30 s.
	CloseRetryInterval time.Duration

	// EventDelivery turns on event-driven revocation (the events
	// extension): Authorities then tell the Service at once when a
	// delegation is revoked, suspended or narrowed, instead of at the next
	// check. pass.DeliveryPush serves the receiver at Paths.Events and
	// advertises it; pass.DeliveryPoll advertises polling, and the
	// application runs [Service.RunEventPoller]. One method only, so every
	// event has one path. If empty, no events: revocations arrive with the
	// next check, as they also do when events are on.
	EventDelivery string
}

// AuthorityChoice is how resolution picks among the Authorities policy
// permits for a user: one choice instead of interacting switches.
type AuthorityChoice uint8

const (
	// PreferOtherAuthorities (the zero value) names the user's Enterprise
	// Authority, or else the trusted Federated Authorities; the Service
	// Authority only when it is the only choice.
	PreferOtherAuthorities AuthorityChoice = iota
	// PreferServiceAuthority names the Service Authority whenever it is
	// permitted: when the user's Enterprise Authority allows Service
	// Authorities, and when the domain has none.
	PreferServiceAuthority
	// OfferServiceAndFederated answers a user without an Enterprise
	// Authority with service_authority and trusted_federated_authorities
	// together, so the Harness can choose (a shape from a draft after
	// v0.1; plain v0.1 Harnesses expect one field and fail on two).
	// Otherwise as PreferOtherAuthorities.
	OfferServiceAndFederated
	// RequireServiceAuthority accepts only passes from the Service
	// Authority. When a user's Enterprise Authority forbids Service
	// Authorities, resolution and redemption answer 403
	// agents_unsupported, so the Harness learns this Service cannot serve
	// that user through any Authority. Requires ServiceAuthority.
	RequireServiceAuthority
)

// Paths are the endpoint paths the Service handler serves, each
// absolute ("/..."). An empty field is Prefix followed by the default
// name shown.
type Paths struct {
	// Prefix is prepended to the default names. If empty, "/agentpass"
	// ("/agentpass").
	Prefix string

	Configuration        string // Prefix + "/configuration"
	JWKS                 string // Prefix + "/jwks.json"
	ResolveAuthorities   string // Prefix + "/resolve-authorities"
	AvailableScopes      string // Prefix + "/available-scopes"
	RedeemBearerToken    string // Prefix + "/redeem-bearer-token"
	RedeemBrowserSession string // Prefix + "/redeem-browser-session"
	Initialize           string // Prefix + "/initialize"
	Events               string // Prefix + "/events" (EventDelivery push)
}

// ScopeQuery is what the available-scopes endpoint knows about a request.
type ScopeQuery struct {
	// User is user.email; Agent is agent.id, vouched for by the Authority.
	User, Agent string
	// Task is the task context, when the Authority sent it.
	Task *pass.Task
	// Authority is the authenticated Authority identifier and TrustMode
	// how it is trusted for this user.
	Authority string
	TrustMode pass.TrustMode
}

// ErrInvalidConfig is matched by every error of New: a Config field is
// missing or invalid.
var ErrInvalidConfig = errors.New("service: invalid configuration")

// errNotNew is what a Service that New did not make (the zero value)
// answers: it has no store, keys or Authority settings to act with.
var errNotNew = fmt.Errorf("%w: the Service was not created with New", ErrInvalidConfig)

// errConfig formats a configuration error wrapping ErrInvalidConfig.
func errConfig(format string, args ...any) error {
	return fmt.Errorf("%w: Config."+format, append([]any{ErrInvalidConfig}, args...)...)
}

// settings is the validated, defaulted configuration.
type settings struct {
	Config
	origin    string // serialised origin
	base      string // BaseURL without trailing slash
	paths     Paths
	supported map[string]bool
	defDest   string // absolute default destination
}

func (cfg Config) validate() (*settings, error) {
	// The Service keeps copies: a caller that changes its slices after New
	// must not change what the running Service trusts or offers.
	cfg.TrustedFederated = slices.Clone(cfg.TrustedFederated)
	cfg.Scopes = slices.Clone(cfg.Scopes)
	if cfg.ServiceAuthority != nil {
		sa := *cfg.ServiceAuthority
		cfg.ServiceAuthority = &sa
	}
	s := &settings{Config: cfg}
	if cfg.Origin == "" {
		return nil, errConfig("Origin is required")
	}
	if err := pass.CheckOrigin(cfg.Origin); err != nil {
		return nil, errConfig("Origin: %w", err)
	}
	s.origin, _ = pass.Origin(cfg.Origin)
	base := cfg.BaseURL
	if base == "" {
		base = s.origin
	}
	if err := pass.CheckHTTPSURL(base); err != nil {
		return nil, errConfig("BaseURL: %w", err)
	}
	if u, _ := url.Parse(base); u.RawQuery != "" || u.ForceQuery {
		return nil, errConfig("BaseURL must not have a query")
	}
	if !pass.SameOrigin(base, s.origin) {
		return nil, errConfig("BaseURL must have the same origin as Origin")
	}
	s.base = strings.TrimSuffix(base, "/")
	if u, _ := url.Parse(s.base); u.Path == "" {
		s.base = s.origin
	}

	if cfg.Keys == nil || cfg.Keys.Current() == nil {
		return nil, errConfig("Keys is required and must hold a current signing key")
	}
	if err := s.validatePaths(); err != nil {
		return nil, err
	}
	if err := s.validateTrust(); err != nil {
		return nil, err
	}
	switch cfg.EventDelivery {
	case "", pass.DeliveryPush, pass.DeliveryPoll:
	default:
		return nil, errConfig("EventDelivery must be empty, %s or %s", pass.DeliveryPush, pass.DeliveryPoll)
	}
	if len(cfg.Scopes) == 0 {
		return nil, errConfig("Scopes must name at least one scope")
	}
	s.supported = make(map[string]bool, len(cfg.Scopes))
	for _, sc := range cfg.Scopes {
		switch {
		case sc.Name == "" || sc.Name == pass.Wildcard:
			return nil, errConfig("Scopes: a scope name must be non-empty and not %q", pass.Wildcard)
		case s.supported[sc.Name]:
			return nil, errConfig("Scopes: %q is listed twice", sc.Name)
		}
		s.supported[sc.Name] = true
	}

	dest := cfg.DefaultDestination
	if dest == "" {
		dest = "/"
	}
	if !strings.HasPrefix(dest, "/") || strings.HasPrefix(dest, "//") || strings.ContainsAny(dest, "\\#") || hasControl(dest) {
		return nil, errConfig("DefaultDestination must be a path starting with a single \"/\"")
	}
	s.defDest = s.origin + dest

	durations := []struct {
		name     string
		v        *time.Duration
		def, max time.Duration
	}{
		{"TokenTTL", &s.TokenTTL, defaultTokenTTL, 0},
		{"SessionTTL", &s.SessionTTL, defaultSessionTTL, 0},
		{"InitTTL", &s.InitTTL, defaultInitTTL, maxInitTTL},
		{"CheckInterval", &s.CheckInterval, defaultCheckInterval, maxCheckInterval},
		{"CheckTimeout", &s.CheckTimeout, defaultCheckTimeout, 0},
		{"UnreachableGrace", &s.UnreachableGrace, 0, maxUnreachableGrace},
		{"CloseRetryInterval", &s.CloseRetryInterval, defaultCloseRetryInterval, 0},
	}
	for _, d := range durations {
		switch {
		case *d.v < 0:
			return nil, errConfig("%s is negative", d.name)
		case *d.v == 0:
			*d.v = d.def
		case d.max > 0 && *d.v > d.max:
			return nil, errConfig("%s is %v, more than %v", d.name, *d.v, d.max)
		}
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Store == nil {
		s.Store = NewMemoryStore()
	}
	// The Authorities' URLs come from configurations published by whoever
	// controls a user's e-mail domain: the outbound policy refuses
	// redirects and non-public destinations.
	hc, err := outbound.New(outbound.Policy{
		Role:                 "service",
		Client:               cfg.HTTPClient,
		WrapTransport:        cfg.WrapTransport,
		AllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks,
		Timeout:              defaultCallTimeout,
	})
	if err != nil {
		return nil, err
	}
	s.HTTPClient = hc
	if s.Discovery == nil {
		d, err := discovery.New(discovery.Config{
			HTTPClient: cfg.HTTPClient, WrapTransport: cfg.WrapTransport,
			InsecureAllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks,
			Now:                          cfg.Now, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("service: default discovery client: %w", err)
		}
		s.Discovery = d
	}
	return s, nil
}

// ErrForbiddenAddress: a call to an Authority, or a fetch of its
// configuration or keys, would connect to a loopback, private or otherwise
// non-public address (see Config.InsecureAllowPrivateNetworks). Nothing was
// sent. It is the same value as discovery.ErrForbiddenAddress.
var ErrForbiddenAddress = netguard.ErrForbiddenAddress

func (s *settings) validatePaths() error {
	p := s.Paths
	if p.Prefix == "" {
		p.Prefix = defaultPrefix
	}
	if !strings.HasPrefix(p.Prefix, "/") || strings.HasSuffix(p.Prefix, "/") {
		return errConfig("Paths.Prefix must start and not end with \"/\"")
	}
	fields := []struct {
		name string
		v    *string
		def  string
	}{
		{"Configuration", &p.Configuration, "/configuration"},
		{"JWKS", &p.JWKS, "/jwks.json"},
		{"ResolveAuthorities", &p.ResolveAuthorities, "/resolve-authorities"},
		{"AvailableScopes", &p.AvailableScopes, "/available-scopes"},
		{"RedeemBearerToken", &p.RedeemBearerToken, "/redeem-bearer-token"},
		{"RedeemBrowserSession", &p.RedeemBrowserSession, "/redeem-browser-session"},
		{"Initialize", &p.Initialize, "/initialize"},
		{"Events", &p.Events, "/events"},
	}
	seen := map[string]bool{}
	for _, f := range fields {
		if *f.v == "" {
			*f.v = p.Prefix + f.def
		}
		v := *f.v
		if !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.ContainsAny(v, "?#{}\\ ") || hasControl(v) {
			return errConfig("Paths.%s %q must be an absolute path without query, fragment or pattern", f.name, v)
		}
		if seen[v] {
			return errConfig("Paths.%s %q is used twice", f.name, v)
		}
		seen[v] = true
	}
	s.paths = p
	return nil
}

func (s *settings) validateTrust() error {
	if sa := s.ServiceAuthority; sa != nil {
		if err := sa.Validate(); err != nil {
			return errConfig("ServiceAuthority: %w", err)
		}
	}
	seen := map[string]bool{}
	for i := range s.TrustedFederated {
		r := &s.TrustedFederated[i]
		if err := r.Validate(); err != nil {
			return errConfig("TrustedFederated[%d]: %w", i, err)
		}
		if seen[r.Authority] {
			return errConfig("TrustedFederated: authority %q is listed twice", r.Authority)
		}
		if s.ServiceAuthority != nil && s.ServiceAuthority.Authority == r.Authority {
			return errConfig("TrustedFederated: %q is also the ServiceAuthority", r.Authority)
		}
		seen[r.Authority] = true
	}
	if s.AuthorityChoice > RequireServiceAuthority {
		return errConfig("unknown AuthorityChoice")
	}
	if s.AuthorityChoice == RequireServiceAuthority && s.ServiceAuthority == nil {
		return errConfig("RequireServiceAuthority needs a ServiceAuthority")
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
