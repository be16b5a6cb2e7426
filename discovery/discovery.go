package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/internal/netguard"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Defaults and hard limits of [Config]. Positive caching never exceeds one
// hour and negative caching five minutes, whatever a TTL or a header says,
// so a domain's change of Authority (or to "none") takes effect within the
// hour, and a new record within five minutes.
const (
	defaultDNSTimeout         = 2 * time.Second
	defaultMinTTL             = 5 * time.Second
	defaultMaxTTL             = time.Hour
	defaultMaxNegativeTTL     = 5 * time.Minute
	defaultFetchTimeout       = 5 * time.Second
	defaultMaxBodyBytes       = 64 << 10
	defaultMaxAge             = 5 * time.Minute
	defaultMaxAgeCap          = time.Hour
	defaultKeyRefetchCooldown = time.Minute
	defaultCacheSize          = 1024

	// maxPositiveTTL caps MaxTTL and MaxAge.
	maxPositiveTTL = time.Hour
	// maxNegativeTTLCap caps MaxNegativeTTL.
	maxNegativeTTLCap = 5 * time.Minute
)

// defaultResolvConf is the file read for nameservers when
// Config.Nameservers is empty.
const defaultResolvConf = "/etc/resolv.conf"

// Config configures a [Client]. The zero value is usable: it reads the
// nameservers from /etc/resolv.conf and fetches over HTTPS with verified
// certificates. Every field is optional; a negative duration or size is an
// error in [New].
type Config struct {
	// Nameservers are the resolvers asked, in order, as "host:port" (":53"
	// is added when the port is missing). A failure at one (SERVFAIL,
	// REFUSED, timeout, malformed answer) moves on to the next; the lookup
	// fails only when all fail. If empty, the nameservers of
	// /etc/resolv.conf are used, and New fails if it cannot read them.
	Nameservers []string

	// DNSTimeout bounds one query to one nameserver, including the TCP
	// retry after a truncated UDP answer. The caller's context bounds the
	// whole lookup. If zero, 2 seconds.
	DNSTimeout time.Duration

	// RequireDNSSEC makes every answer, positive or negative, carry the AD
	// (authenticated data) bit; an answer without it is a lookup failure.
	// Queries then set the EDNS0 DO bit and the AD bit. The nameservers must
	// be validating resolvers reached over a trusted path (for example one on
	// localhost): the AD bit is only as trustworthy as the resolver.
	RequireDNSSEC bool

	// MinTTL is the floor applied to DNS TTLs and to HTTP cache lifetimes
	// (including "no-store"), so that a flood of requests does not become a
	// flood of lookups. If zero, 5 seconds.
	MinTTL time.Duration

	// MaxTTL caps how long a TXT answer is cached. If zero, one hour
	// (1 h); larger than one hour is an error.
	MaxTTL time.Duration

	// MaxNegativeTTL caps how long "no record" (NXDOMAIN or NODATA) is
	// cached; the answer's SOA minimum is used below that cap, MinTTL when
	// there is no SOA. If zero, 5 minutes; larger than
	// five minutes is an error.
	MaxNegativeTTL time.Duration

	// HTTPClient is copied, never modified; only its Transport is used. The
	// Transport may be nil (http.DefaultTransport's settings, without a proxy:
	// a library reads no environment variables), an *http.Transport, or a
	// wrapper with the methods Unwrap() http.RoundTripper and
	// Rewrap(http.RoundTripper) http.RoundTripper (rebuilt around a hardened
	// copy of what it wraps). Any other RoundTripper cannot be given the
	// address check and is refused unless InsecureAllowPrivateNetworks is set;
	// use WrapTransport instead. A Transport with a Proxy, or with its own
	// dialer (DialContext, DialTLSContext, Dial, DialTLS), is refused too
	// unless InsecureAllowPrivateNetworks is set: the proxy, or a tunnelling
	// dialer (SOCKS5, CONNECT, SSH), would reach destinations unchecked while
	// its connections show a public address. The TLS configuration (RootCAs,
	// certificates) is honoured with MinVersion raised to TLS 1.2;
	// InsecureSkipVerify, or a MaxVersion below
	// 1.2, is refused. Up to 64 idle connections per host are kept unless the
	// Transport says otherwise. The cookie jar is dropped and redirects are
	// followed only to the same https origin, at most 3. If nil, the default
	// transport.
	HTTPClient *http.Client

	// WrapTransport, when set, wraps the transport built from HTTPClient,
	// after its checks are installed: the way to instrument fetches (for
	// example with otelhttp) without losing them. It must not return nil.
	WrapTransport func(http.RoundTripper) http.RoundTripper

	// FetchTimeout bounds one HTTPS fetch. If zero, 5 seconds.
	FetchTimeout time.Duration

	// MaxBodyBytes bounds a fetched body. If zero, 64 KiB
	// (64 KiB). Configuration documents are also bounded by
	// pass.MaxDocumentSize.
	MaxBodyBytes int64

	// DefaultMaxAge is how long a document without Cache-Control max-age is
	// cached. If zero, 5 minutes.
	DefaultMaxAge time.Duration

	// MaxAge caps how long a document is cached, whatever its headers say.
	// If zero, one hour; larger than one hour is an error.
	MaxAge time.Duration

	// InsecureAllowPrivateNetworks allows fetches from loopback, private,
	// link-local and other non-public addresses. Without it such
	// destinations are refused after name resolution and before
	// connecting: configuration URLs are chosen by whoever controls a
	// domain, who must not be able to point fetches at internal hosts. It
	// also lets HTTPClient's Transport be any RoundTripper, used as given.
	// Only tests and local development networks need it.
	InsecureAllowPrivateNetworks bool

	// KeyRefetchCooldown is the least time between two fetches of a JWKS
	// caused by an unknown "kid" (see [Client.LookupKey]). If zero,
	// one minute.
	KeyRefetchCooldown time.Duration

	// CacheSize bounds each cache (TXT answers, configurations, JWKS) in
	// entries; the least recently used entry is evicted. If zero,
	// 1,024.
	CacheSize int

	// Now is the clock for every expiry decision. If nil, time.Now.
	Now func() time.Time

	// Logger receives lookup and fetch failures (names and URLs, never
	// document contents). If nil, nothing is logged.
	Logger *slog.Logger

	// TracerProvider and MeterProvider receive the client's spans and
	// metrics (agentpass.*), which carry no pass, token, key or e-mail
	// address. If nil, otel's global providers, which record nothing until
	// the application installs an SDK. Outbound calls are traced by
	// instrumenting WrapTransport.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

// Errors. Every error a [Client] returns matches one of these with
// errors.Is (an input error matches [ErrInvalidName]; a cancelled context
// matches [ErrLookupFailed] or [ErrFetchFailed] and the context's error).
var (
	// ErrNoRecord: the name has no TXT record (NXDOMAIN, or NOERROR without
	// TXT records). Only this outcome may fall through to other Authorities.
	ErrNoRecord = errors.New("discovery: no record")
	// ErrDelegationDisabled: the enterprise record is "none": the domain
	// forbids agent delegation, and no other Authority may be used.
	ErrDelegationDisabled = errors.New("discovery: delegation disabled by the domain")
	// ErrLookupFailed: the DNS lookup failed (SERVFAIL, REFUSED, timeout,
	// malformed or unauthenticated answer). It never means "no record", so
	// whoever can break a lookup cannot open the fallback to other
	// Authorities. The error is a [*LookupError].
	ErrLookupFailed = errors.New("discovery: DNS lookup failed")
	// ErrInvalidRecord: the TXT record exists but is not usable. Like a
	// failed lookup, it never means "no record".
	ErrInvalidRecord = errors.New("discovery: invalid TXT record")
	// ErrFetchFailed: an HTTPS fetch failed. The error is a [*FetchError].
	ErrFetchFailed = errors.New("discovery: fetch failed")
	// ErrInvalidDocument: a fetched document is not a valid configuration
	// or JWKS. The pass package's error is wrapped too, so errors.Is with
	// pass.ErrUnsupportedVersion works.
	ErrInvalidDocument = errors.New("discovery: invalid document")
	// ErrMismatch: a configuration does not describe what was discovered
	// (service.origin or trust_mode). It comes as a
	// [*MismatchError], which also matches ErrInvalidDocument.
	ErrMismatch = errors.New("discovery: configuration does not match its discovery")
	// ErrKeyNotFound: the JWKS has no key with the asked "kid".
	ErrKeyNotFound = errors.New("discovery: key not found")
	// ErrInvalidName: the host, domain, origin or URL given is not valid.
	ErrInvalidName = errors.New("discovery: invalid name")
	// ErrForbiddenAddress: a fetch would connect to a loopback, private or
	// otherwise non-public address; nothing was sent. It is the same value
	// as the ErrForbiddenAddress of the role packages.
	ErrForbiddenAddress = netguard.ErrForbiddenAddress
	// ErrInvalidConfig: New was given an invalid Config, or a method was
	// called on a Client that New did not make (the zero value).
	ErrInvalidConfig = errors.New("discovery: invalid configuration")
)

// LookupError is a failed DNS lookup. It matches [ErrLookupFailed] and its
// cause with errors.Is.
type LookupError struct {
	Name    string // the name queried, with a trailing dot
	Server  string // the last nameserver asked
	Rcode   int    // the last response code, or -1 when no answer was parsed
	Timeout bool   // the last attempt timed out
	Reason  string // what was wrong, when Err does not say
	Err     error  // the cause, may be nil
}

func (e *LookupError) Error() string {
	var b strings.Builder
	b.WriteString("discovery: DNS lookup of ")
	b.WriteString(e.Name)
	b.WriteString(" failed")
	if e.Server != "" {
		b.WriteString(" at ")
		b.WriteString(e.Server)
	}
	switch {
	case e.Timeout:
		b.WriteString(": timeout")
	case e.Rcode > 0:
		b.WriteString(": ")
		if s, ok := dns.RcodeToString[e.Rcode]; ok {
			b.WriteString(s)
		} else {
			fmt.Fprintf(&b, "rcode %d", e.Rcode)
		}
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns ErrLookupFailed and the cause.
func (e *LookupError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrLookupFailed}
	}
	return []error{ErrLookupFailed, e.Err}
}

// FetchError is a failed HTTPS fetch. It matches [ErrFetchFailed] and its
// cause with errors.Is. It never carries the response body.
type FetchError struct {
	URL        string
	StatusCode int // 0 when no response was received
	Reason     string
	Err        error
}

func (e *FetchError) Error() string {
	var b strings.Builder
	b.WriteString("discovery: fetch ")
	b.WriteString(e.URL)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": status %d", e.StatusCode)
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns ErrFetchFailed and the cause.
func (e *FetchError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrFetchFailed}
	}
	return []error{ErrFetchFailed, e.Err}
}

// MismatchError is a configuration that does not describe what was
// discovered: a Service configuration whose service.origin is not the origin
// looked up, or an enterprise Authority configuration whose trust_mode is
// not "enterprise". It matches [ErrMismatch] and
// [ErrInvalidDocument].
type MismatchError struct {
	URL   string // the configuration URL
	Field string // "service.origin" or "trust_mode"
	Got   string
	Want  string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("discovery: configuration %s: %s is %q, want %q", e.URL, e.Field, e.Got, e.Want)
}

// Unwrap returns ErrMismatch and ErrInvalidDocument.
func (e *MismatchError) Unwrap() []error { return []error{ErrMismatch, ErrInvalidDocument} }

// Client looks up TXT records and fetches configurations and JWKS, with
// caches. It is safe for concurrent use.
type Client struct {
	nameservers    []string
	dnsTimeout     time.Duration
	requireDNSSEC  bool
	minTTL         time.Duration
	maxTTL         time.Duration
	maxNegTTL      time.Duration
	fetchTimeout   time.Duration
	maxBody        int64
	defaultMaxAge  time.Duration
	maxAge         time.Duration
	keyCooldown    time.Duration
	now            func() time.Time
	log            *slog.Logger
	tel            *telemetry.T
	http           *http.Client
	udp, tcp       *dns.Client
	group          singleflight.Group
	joined         func(key string) // tests: a caller joined flight key
	txtCache       *cache[txtResult]
	docCache       *cache[any]
	jwksCache      *cache[*jwksEntry]
	refetchMu      sync.Mutex // guards jwksEntry.refetched
	allowPrivateIP bool
	fetchKeys      fetchKeys
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	c := &Client{
		requireDNSSEC:  cfg.RequireDNSSEC,
		allowPrivateIP: cfg.InsecureAllowPrivateNetworks,
		now:            cfg.Now,
		log:            cfg.Logger,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if c.tel, err = telemetry.New("discovery", cfg.TracerProvider, cfg.MeterProvider); err != nil {
		return nil, err
	}
	durations := []struct {
		name      string
		v         time.Duration
		def, max  time.Duration
		dst       *time.Duration
		maxReason string
	}{
		{"DNSTimeout", cfg.DNSTimeout, defaultDNSTimeout, 0, &c.dnsTimeout, ""},
		{"MinTTL", cfg.MinTTL, defaultMinTTL, 0, &c.minTTL, ""},
		{"MaxTTL", cfg.MaxTTL, defaultMaxTTL, maxPositiveTTL, &c.maxTTL, "positive caching is capped at one hour"},
		{"MaxNegativeTTL", cfg.MaxNegativeTTL, defaultMaxNegativeTTL, maxNegativeTTLCap, &c.maxNegTTL, "negative caching is capped at five minutes"},
		{"FetchTimeout", cfg.FetchTimeout, defaultFetchTimeout, 0, &c.fetchTimeout, ""},
		{"defaultMaxAge", cfg.DefaultMaxAge, defaultMaxAge, 0, &c.defaultMaxAge, ""},
		{"MaxAge", cfg.MaxAge, defaultMaxAgeCap, maxPositiveTTL, &c.maxAge, "positive caching is capped at one hour"},
		{"KeyRefetchCooldown", cfg.KeyRefetchCooldown, defaultKeyRefetchCooldown, 0, &c.keyCooldown, ""},
	}
	for _, d := range durations {
		switch {
		case d.v < 0:
			return nil, fmt.Errorf("discovery: Config.%s is negative", d.name)
		case d.v == 0:
			*d.dst = d.def
		case d.max > 0 && d.v > d.max:
			return nil, fmt.Errorf("discovery: Config.%s is %v: %s", d.name, d.v, d.maxReason)
		default:
			*d.dst = d.v
		}
	}
	if c.minTTL > c.maxTTL || c.minTTL > c.maxNegTTL || c.minTTL > c.maxAge {
		return nil, errors.New("discovery: Config.MinTTL exceeds MaxTTL, MaxNegativeTTL or MaxAge")
	}
	if c.defaultMaxAge > c.maxAge {
		c.defaultMaxAge = c.maxAge
	}

	switch {
	case cfg.MaxBodyBytes < 0:
		return nil, errors.New("discovery: Config.MaxBodyBytes is negative")
	case cfg.MaxBodyBytes == 0:
		c.maxBody = defaultMaxBodyBytes
	default:
		c.maxBody = cfg.MaxBodyBytes
	}
	size := cfg.CacheSize
	switch {
	case size < 0:
		return nil, errors.New("discovery: Config.CacheSize is negative")
	case size == 0:
		size = defaultCacheSize
	}
	c.txtCache = newCache[txtResult](size)
	c.docCache = newCache[any](size)
	c.jwksCache = newCache[*jwksEntry](size)

	ns, err := nameservers(cfg.Nameservers)
	if err != nil {
		return nil, err
	}
	c.nameservers = ns
	c.udp = &dns.Client{Net: "udp", UDPSize: ednsSize, Timeout: c.dnsTimeout}
	c.tcp = &dns.Client{Net: "tcp", Timeout: c.dnsTimeout}

	hc, err := c.newHTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	c.http = hc
	return c, nil
}

func nameservers(list []string) ([]string, error) {
	if len(list) == 0 {
		rc, err := dns.ClientConfigFromFile(defaultResolvConf)
		if err != nil {
			return nil, fmt.Errorf("discovery: no Config.Nameservers and cannot read %s: %w", defaultResolvConf, err)
		}
		for _, s := range rc.Servers {
			list = append(list, net.JoinHostPort(s, rc.Port))
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("discovery: no Config.Nameservers and none in %s", defaultResolvConf)
		}
		return list, nil
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			host, port = strings.Trim(s, "[]"), "53"
		}
		if host == "" || port == "" {
			return nil, fmt.Errorf("discovery: invalid nameserver %q", s)
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out, nil
}

// errNotNew is what every lookup of a Client not made by New returns.
var errNotNew = fmt.Errorf("%w: the Client was not created with New", ErrInvalidConfig)

// ready reports errNotNew for a zero or nil Client, which has no caches,
// no resolver and no HTTP client to work with.
func (c *Client) ready() error {
	if c == nil || c.txtCache == nil {
		return errNotNew
	}
	return nil
}
