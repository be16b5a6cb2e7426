// Package outbound builds the one HTTP client policy every role uses for its
// protocol calls: verified TLS 1.2 or newer, destinations checked at dial
// time (see internal/netguard), no redirects unless asked, no cookie jar,
// no proxy from the environment, bounded time, HTTP/1.1 unless the caller's
// Transport.Protocols says otherwise, no transparent compression, and idle
// connections kept for HTTP/1.1 peers. Bodies are bounded by the callers (internal/httpx for
// JSON calls, discovery for documents).
//
// # Transports
//
// The caller's http.Client is copied, never modified. Its Transport may be:
//
//  1. nil: http.DefaultTransport's settings without its proxy (a library
//     reads no environment variables);
//  2. an *http.Transport: cloned, then hardened; one with a Proxy or its
//     own dialer (DialContext, DialTLSContext, Dial, DialTLS) is refused
//     unless private networks are allowed, since the proxy or a tunnelling
//     dialer (SOCKS5, CONNECT, SSH), not this process, would connect to
//     the destination while the connection shows the tunnel's address;
//  3. a wrapper implementing both Unwrap() http.RoundTripper and
//     Rewrap(http.RoundTripper) http.RoundTripper: the wrapped transport is
//     hardened (recursively) and the wrapper rebuilt around it with Rewrap,
//     so the caller's wrapper and transport stay untouched;
//  4. anything else: refused, since no address check can be installed in
//     it, unless private networks are allowed; it is then used as given.
//
// Policy.WrapTransport is applied around the result: it is the supported
// way to instrument calls (otelhttp, recorders) without losing the checks.
package outbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/agentpass-go/agentpass/internal/netguard"
	"github.com/agentpass-go/agentpass/pass"
)

// MaxIdleConnsPerHost replaces net/http's default of 2 idle connections per
// host. A Service redeeming under load against an HTTP/1.1 Authority needs
// one connection per call in flight; with 2 idle slots every burst closes
// all but two and the next burst pays a TLS handshake per call (about 4,000
// handshakes per 6,000 redemptions measured). 64 covers the concurrency of
// one process towards one peer while IdleConnTimeout still bounds the idle
// sockets. A caller's explicit setting is kept.
const MaxIdleConnsPerHost = 64

// http1Only is the protocol set of a transport whose caller did not choose
// one. The protocol's calls are small JSON requests and answers on
// kept-alive connections, where HTTP/2's multiplexing saves nothing while
// Go's HTTP/2 client and server spend about half as much CPU again per call
// as HTTP/1.1 (about 110 against 74 µs per loopback round trip for both
// sides together, measured with 32 calls in flight). A caller who wants
// HTTP/2, for example to bound the connections to a far Authority, sets
// Transport.Protocols; that choice is kept.
func http1Only() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	return &p
}

// DefaultDialTimeout bounds one TCP connect when the Policy's Timeout does
// not say less.
const DefaultDialTimeout = 10 * time.Second

// maxWrapDepth bounds the Unwrap chain, so a wrapper that unwraps to itself
// cannot loop.
const maxWrapDepth = 16

// ErrRedirect reports a redirect the policy refused.
var ErrRedirect = errors.New("agentpass: redirect refused")

// Policy is the configuration of one role's client.
type Policy struct {
	// Role prefixes configuration errors ("harness", "service", ...).
	Role string

	// Client is the caller's client, copied (Timeout and Transport only).
	// If nil, the default transport and Timeout.
	Client *http.Client

	// WrapTransport, when set, wraps the hardened transport; it must not
	// return nil.
	WrapTransport func(http.RoundTripper) http.RoundTripper

	// AllowPrivateNetworks skips the address check and accepts an opaque
	// Transport as given.
	AllowPrivateNetworks bool

	// Timeout is the client's Timeout when the caller's client has none,
	// and bounds the dial (at most DefaultDialTimeout).
	Timeout time.Duration

	// ResponseHeaderTimeout, when positive, is set on the transport.
	ResponseHeaderTimeout time.Duration

	// SameOriginRedirects is how many redirects to the same https origin as
	// the original request are followed; any other redirect fails with
	// ErrRedirect. If zero, redirects are not followed: the 3xx answer is
	// returned as is, so a body carrying a pass never goes elsewhere.
	SameOriginRedirects int
}

// Rewrapper is the method set a wrapping RoundTripper implements so that the
// policy can harden the transport it wraps without modifying either.
type Rewrapper interface {
	http.RoundTripper
	// Unwrap returns the wrapped RoundTripper (nil means the default).
	Unwrap() http.RoundTripper
	// Rewrap returns a copy of the wrapper around rt.
	Rewrap(rt http.RoundTripper) http.RoundTripper
}

// New returns the client for p, or an error naming what in the caller's
// configuration cannot be made safe.
func New(p Policy) (*http.Client, error) {
	if p.Timeout < 0 || p.ResponseHeaderTimeout < 0 || p.SameOriginRedirects < 0 {
		return nil, fmt.Errorf("%s: negative timeout or redirect count", p.Role)
	}
	hc := &http.Client{Timeout: p.Timeout}
	var rt http.RoundTripper
	if p.Client != nil {
		rt = p.Client.Transport
		if p.Client.Timeout > 0 {
			hc.Timeout = p.Client.Timeout
		}
	}
	rt, err := p.harden(rt, 0)
	if err != nil {
		return nil, err
	}
	if p.WrapTransport != nil {
		if rt = p.WrapTransport(rt); rt == nil {
			return nil, fmt.Errorf("%s: Config.WrapTransport returned nil", p.Role)
		}
	}
	hc.Transport = rt
	hc.CheckRedirect = noRedirects
	if n := p.SameOriginRedirects; n > 0 {
		hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if len(via) > n {
				return fmt.Errorf("%w: more than %d redirects", ErrRedirect, n)
			}
			if req.URL.Scheme != "https" || !pass.SameOrigin(req.URL.String(), via[0].URL.String()) {
				return fmt.Errorf("%w: to another origin", ErrRedirect)
			}
			return nil
		}
	}
	return hc, nil
}

// noRedirects returns a redirect answer as is: the protocol's JSON
// endpoints never redirect, and following one could carry a pass or an
// assertion to another server.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (p Policy) harden(rt http.RoundTripper, depth int) (http.RoundTripper, error) {
	switch t := rt.(type) {
	case nil:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil       // a library reads no environment variables
		tr.DialContext = nil // the guarded dialer replaces net/http's
		return p.hardenTransport(tr)
	case *http.Transport:
		return p.hardenTransport(t.Clone())
	case Rewrapper:
		if depth >= maxWrapDepth {
			return nil, fmt.Errorf("%s: Config.HTTPClient.Transport: more than %d wrappers", p.Role, maxWrapDepth)
		}
		inner, err := p.harden(t.Unwrap(), depth+1)
		if err != nil {
			return nil, err
		}
		out := t.Rewrap(inner)
		if out == nil {
			return nil, fmt.Errorf("%s: Config.HTTPClient.Transport: %T.Rewrap returned nil", p.Role, t)
		}
		return out, nil
	}
	if p.AllowPrivateNetworks {
		return rt, nil
	}
	return nil, fmt.Errorf("%s: Config.HTTPClient.Transport is a %T, in which the address check cannot be installed: "+
		"pass an *http.Transport (or a wrapper with Unwrap and Rewrap methods) and instrument with Config.WrapTransport", p.Role, rt)
}

// hardenTransport hardens tr, which the caller owns.
func (p Policy) hardenTransport(tr *http.Transport) (*http.Transport, error) {
	if tr.Proxy != nil && !p.AllowPrivateNetworks {
		// The dial-time check would see the proxy's address, while the
		// proxy reaches whatever destination it is asked for.
		return nil, fmt.Errorf("%s: Config.HTTPClient's Transport has a Proxy, which would connect to destinations "+
			"whose addresses cannot be checked: set Proxy to nil", p.Role)
	}
	//lint:ignore SA1019 a deprecated dialer is refused like the others.
	if (tr.DialContext != nil || tr.DialTLSContext != nil || tr.Dial != nil || tr.DialTLS != nil) && !p.AllowPrivateNetworks {
		// A tunnelling dialer returns a connection whose remote address
		// is the tunnel's, while the tunnel reaches an internal name.
		return nil, fmt.Errorf("%s: Config.HTTPClient's Transport has its own dialer (DialContext, DialTLSContext, Dial or DialTLS), "+
			"which may tunnel to destinations whose addresses cannot be checked: leave them nil and instrument calls with "+
			"Config.WrapTransport", p.Role)
	}
	tlsCfg := &tls.Config{}
	if tr.TLSClientConfig != nil {
		tlsCfg = tr.TLSClientConfig.Clone()
	}
	if tlsCfg.InsecureSkipVerify {
		return nil, fmt.Errorf("%s: Config.HTTPClient has InsecureSkipVerify set; certificates are always verified", p.Role)
	}
	if tlsCfg.MaxVersion != 0 && tlsCfg.MaxVersion < tls.VersionTLS12 {
		return nil, fmt.Errorf("%s: Config.HTTPClient allows only TLS versions below 1.2", p.Role)
	}
	tlsCfg.MinVersion = max(tlsCfg.MinVersion, tls.VersionTLS12)
	tr.TLSClientConfig = tlsCfg
	if tr.Protocols == nil {
		tr.Protocols = http1Only()
	}
	if !tr.Protocols.HTTP2() {
		// Cloning a transport that would attempt HTTP/2 has already
		// offered "h2" in ALPN; a server taking it would then answer
		// frames this transport cannot read. The slice is the caller's.
		tlsCfg.NextProtos = slices.DeleteFunc(slices.Clone(tlsCfg.NextProtos), func(p string) bool { return p == "h2" })
	}
	if tr.MaxIdleConnsPerHost == 0 {
		tr.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	}
	// No transparent gzip: protocol answers are a few hundred bytes, and
	// asking for it costs every call a header map of its own in net/http
	// and, for a compressed answer, a decompressor.
	tr.DisableCompression = true
	if p.ResponseHeaderTimeout > 0 {
		tr.ResponseHeaderTimeout = p.ResponseHeaderTimeout
	}
	if !p.AllowPrivateNetworks {
		dial := DefaultDialTimeout
		if p.Timeout > 0 {
			dial = min(dial, p.Timeout)
		}
		netguard.Protect(tr, dial)
	}
	return tr, nil
}
