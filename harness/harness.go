package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/netguard"
	"github.com/agentpass-go/agentpass/internal/outbound"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// Defaults of [Config].
const (
	// defaultMinPoll is the default floor between two status polls.
	defaultMinPoll = 250 * time.Millisecond
	// minPollFloor is the smallest MinPoll accepted: the Harness never polls
	// in a tight loop, whatever the Authority's poll_after_ms.
	minPollFloor = 100 * time.Millisecond
	// defaultMaxPoll caps the backoff between polls when the Authority gives
	// no poll_after_ms.
	defaultMaxPoll = 10 * time.Second
	// maxPollAfter caps how long an Authority's poll_after_ms can make the
	// Harness wait between two polls.
	maxPollAfter = 5 * time.Minute
	// defaultMaxRetryWait bounds how long a 429 answer's Retry-After makes
	// the Harness wait before retrying a redemption or a poll.
	defaultMaxRetryWait = 30 * time.Second
	// defaultHTTPTimeout is the timeout of the default HTTP client.
	defaultHTTPTimeout = 30 * time.Second
	// defaultTaskAttestationTTL is the lifetime of task attestations and of
	// harness proofs the Client makes: short, since a leaked proof is
	// replayable until it expires; verifiers accept at most 300 s.
	defaultTaskAttestationTTL = 60 * time.Second
)

// Config configures a [Client]. Only HarnessID is required; every other
// field has a documented default.
type Config struct {
	// HarnessID is harness.id, the identifier of this Harness (for example
	// "claude-code" or "acme-build-bot"). Required.
	HarnessID string

	// HTTPClient sends every request to Services and Authorities. It is copied,
	// never modified; its Timeout (30 seconds if zero) and Transport
	// are used. The copy follows no redirect (a redemption body carries a pass:
	// a 3xx answer is an error), keeps no cookies, requires TLS 1.2 with
	// verified certificates (InsecureSkipVerify is refused), keeps up to 64
	// idle connections per host unless the Transport says otherwise, and
	// refuses non-public addresses (see InsecureAllowPrivateNetworks). The
	// Transport may be nil (http.DefaultTransport's settings without proxy: a
	// library reads no environment variables), an *http.Transport (cloned), or
	// a wrapper with the methods Unwrap() http.RoundTripper and
	// Rewrap(http.RoundTripper) http.RoundTripper, rebuilt around a hardened
	// copy of what it wraps. Any other RoundTripper cannot be given the address
	// check and makes New fail unless InsecureAllowPrivateNetworks is set;
	// instrument with WrapTransport instead. A Transport with a Proxy, or with
	// its own dialer (DialContext, DialTLSContext, Dial, DialTLS), is refused
	// too unless InsecureAllowPrivateNetworks is set: the proxy, or a
	// tunnelling dialer (SOCKS5, CONNECT, SSH), would reach destinations
	// unchecked while its connections show a public address.
	HTTPClient *http.Client

	// WrapTransport, when set, wraps the transport built from HTTPClient
	// after its checks are installed, and is also given to the default
	// Discovery: the way to instrument calls (for example with otelhttp)
	// without losing the checks. It must not return nil.
	WrapTransport func(http.RoundTripper) http.RoundTripper

	// InsecureAllowPrivateNetworks allows requests to loopback, private,
	// link-local and other non-public addresses. Without it such
	// destinations are refused after name resolution and before
	// connecting: the endpoint URLs come from documents published by
	// Services and Authorities, which must not be able to point the Harness
	// at its own internal network. It also lets HTTPClient's Transport be
	// any RoundTripper, used as given. It applies to the default Discovery
	// too, not to a Discovery given in Config, nor to Token.Transport, whose
	// destination the agent chooses. Only tests and local development
	// networks need it.
	InsecureAllowPrivateNetworks bool

	// Discovery finds Services (DNS TXT and configuration) and fetches
	// Authority configurations. If nil, discovery.New with HTTPClient,
	// WrapTransport, InsecureAllowPrivateNetworks, Now and Logger and the
	// system's nameservers.
	Discovery *discovery.Client

	// Keys returns the holder-binding key for one Acquire (harness.cnf,
	// §3.1.1). It is called once per Acquire and should return a fresh key
	// each time, so that two tasks never share a key and a leaked key exposes one task only. If nil, a new
	// ES256 key per Acquire.
	Keys func() (*dpop.Key, error)

	// Attestation, when set, returns a harness attestation JWT signed by
	// the Harness's vendor for the given holder key (harness.attestation,
	// §3.1.2), or "" to send none. It is called once per Acquire.
	Attestation func(ctx context.Context, key *dpop.Key) (string, error)

	// ChooseAuthority chooses one Authority when the Service offers trusted
	// federated Authorities (with or without its own Service Authority),
	// typically by asking a person. It must return one of options; anything
	// else fails the Acquire. If nil, and no preferred Authority
	// on offer is configured, Acquire fails with a [*ChoiceRequiredError]
	// listing the options: the Client never picks silently, not even the
	// only federated Authority on offer, since a federated Authority is a
	// third party that learns about the User and the task.
	ChooseAuthority func(ctx context.Context, options []pass.AuthorityRef) (pass.AuthorityRef, error)

	// PreferredAuthority is the Authority identifier (the "authority"
	// member, compared as an exact string, since identifiers may carry a
	// path) to use when the Service offers a
	// choice and it is on offer. A preferred Authority that is not on offer
	// is never used; when the Service names a single Enterprise or Service
	// Authority it is ignored, as that Authority governs the User.
	// Request.Authority overrides it for one Acquire.
	PreferredAuthority string

	// MinPoll is the least time between two status polls; an Authority's
	// poll_after_ms below it is raised to it. If zero, 250 ms; below
	// 100 ms is an error.
	MinPoll time.Duration

	// MaxPoll caps the exponential backoff (with jitter) used between polls
	// when the Authority gives no poll_after_ms. If zero, 10 seconds;
	// it must not be below MinPoll.
	MaxPoll time.Duration

	// MaxRetryWait bounds the wait a 429 answer's Retry-After asks for; an
	// answer asking for longer ends the redemption (or the polling) with
	// the error. If zero, 30 seconds.
	MaxRetryWait time.Duration

	// Now is the clock for proofs, attestations and expiry. If nil,
	// time.Now.
	Now func() time.Time

	// Logger receives one record per step (service, authority, user, task,
	// outcome); never a pass, token, proof, request id or status URL. If
	// nil, nothing is logged.
	Logger *slog.Logger

	// TracerProvider and MeterProvider receive the client's spans and
	// metrics (agentpass.*), which carry no pass, token, key or e-mail
	// address. If nil, otel's global providers, which record nothing until
	// the application installs an SDK. Outbound calls are traced by
	// instrumenting WrapTransport.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider

	// KeyStore keeps the holder keys of requests made with Start, so that
	// Wait can resume them, possibly after a restart (see
	// NewFileKeyStore). If nil, keys live in the Client's memory: Wait
	// then works within the same process only. Acquire never uses it.
	KeyStore KeyStore

	// Progress, when set, is called synchronously at each step of Acquire
	// and redemption, for example to tell the User where to approve the
	// request; Progress.String is a line a CLI can print as is. Events
	// report changes of state, not polls. It must return quickly.
	Progress func(Progress)
}

// Client acquires AgentPasses and redeems them. It is safe for concurrent
// use; each Acquire is independent.
type Client struct {
	harnessID    string
	http         *http.Client
	disc         *discovery.Client
	keys         func() (*dpop.Key, error)
	attestation  func(context.Context, *dpop.Key) (string, error)
	chooser      func(context.Context, []pass.AuthorityRef) (pass.AuthorityRef, error)
	preferred    string
	minPoll      time.Duration
	maxPoll      time.Duration
	maxRetryWait time.Duration
	now          func() time.Time
	log          *slog.Logger
	tel          *telemetry.T
	progress     func(Progress)

	// completions are the mission completions Run retries.
	completions completionQueue
	// keyStore keeps the keys of started requests; pending tracks them.
	keyStore KeyStore
	pending  pendingSet

	// sleep waits d or until ctx ends; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	// jitter returns a number in [0, 1); tests replace it.
	jitter func() float64
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.HarnessID == "" {
		return nil, errors.New("harness: Config.HarnessID is required")
	}
	c := &Client{
		harnessID:    cfg.HarnessID,
		keys:         cfg.Keys,
		attestation:  cfg.Attestation,
		chooser:      cfg.ChooseAuthority,
		preferred:    cfg.PreferredAuthority,
		minPoll:      cfg.MinPoll,
		maxPoll:      cfg.MaxPoll,
		maxRetryWait: cfg.MaxRetryWait,
		now:          cfg.Now,
		log:          cfg.Logger,
		progress:     cfg.Progress,
		sleep:        sleepCtx,
		jitter:       randFloat,
		completions:  completionQueue{wake: make(chan struct{}, 1)},
		keyStore:     cfg.KeyStore,
	}
	if c.keyStore == nil {
		c.keyStore = &memoryKeyStore{}
	}
	if c.minPoll == 0 {
		c.minPoll = defaultMinPoll
	}
	if c.minPoll < minPollFloor {
		return nil, fmt.Errorf("harness: Config.MinPoll %v is below %v (the Harness never polls in a tight loop)", c.minPoll, minPollFloor)
	}
	if c.maxPoll == 0 {
		c.maxPoll = max(defaultMaxPoll, c.minPoll)
	}
	if c.maxPoll < c.minPoll {
		return nil, fmt.Errorf("harness: Config.MaxPoll %v is below MinPoll %v", c.maxPoll, c.minPoll)
	}
	if c.maxRetryWait == 0 {
		c.maxRetryWait = defaultMaxRetryWait
	}
	if c.maxRetryWait < 0 {
		return nil, errors.New("harness: Config.MaxRetryWait is negative")
	}
	if cfg.PreferredAuthority != "" {
		if err := pass.CheckHTTPSURL(cfg.PreferredAuthority); err != nil {
			return nil, fmt.Errorf("harness: Config.PreferredAuthority: %w", err)
		}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	tel, err := telemetry.New("harness", cfg.TracerProvider, cfg.MeterProvider)
	if err != nil {
		return nil, err
	}
	c.tel = tel
	if c.keys == nil {
		c.keys = func() (*dpop.Key, error) { return dpop.GenerateKey("ES256") }
	}
	hc, err := outbound.New(outbound.Policy{
		Role:                 "harness",
		Client:               cfg.HTTPClient,
		WrapTransport:        cfg.WrapTransport,
		AllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks,
		Timeout:              defaultHTTPTimeout,
	})
	if err != nil {
		return nil, err
	}
	c.http = hc
	c.disc = cfg.Discovery
	if c.disc == nil {
		d, err := discovery.New(discovery.Config{
			HTTPClient: cfg.HTTPClient, WrapTransport: cfg.WrapTransport,
			InsecureAllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks,
			Now:                          cfg.Now, Logger: cfg.Logger,
			TracerProvider: cfg.TracerProvider, MeterProvider: cfg.MeterProvider,
		})
		if err != nil {
			return nil, fmt.Errorf("harness: default discovery client: %w", err)
		}
		c.disc = d
	}
	return c, nil
}

// ErrForbiddenAddress: a request to a Service or Authority endpoint would
// connect to a loopback, private or otherwise non-public address (see
// Config.InsecureAllowPrivateNetworks). Nothing was sent. It is the same
// value as discovery.ErrForbiddenAddress, so either matches whichever layer
// refused.
var ErrForbiddenAddress = netguard.ErrForbiddenAddress

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *Client) emit(p Progress) {
	if c.progress != nil {
		c.progress(p)
	}
}
