package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/internal/outbound"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// maxRedirects is the number of same-origin redirects a fetch follows.
const maxRedirects = 3

// newHTTPClient derives the fetching client from the caller's, without
// modifying it (see Config.HTTPClient): the SDK's one outbound policy, with
// same-origin redirects and the fetch timeout.
func (c *Client) newHTTPClient(cfg Config) (*http.Client, error) {
	hc, err := outbound.New(outbound.Policy{
		Role:                  "discovery",
		Client:                cfg.HTTPClient,
		WrapTransport:         cfg.WrapTransport,
		AllowPrivateNetworks:  c.allowPrivateIP,
		Timeout:               c.fetchTimeout,
		ResponseHeaderTimeout: c.fetchTimeout,
		SameOriginRedirects:   maxRedirects,
	})
	if err != nil {
		return nil, err
	}
	hc.Timeout = c.fetchTimeout // FetchTimeout wins over the caller's client
	return hc, nil
}

// mediaJSON and mediaJWKS are the accepted Content-Types.
const (
	mediaJSON = "application/json"
	mediaJWKS = "application/jwk-set+json"
)

// fetched is a fetched body and how long it may be cached.
type fetched struct {
	body     []byte
	lifetime time.Duration
}

// fetch GETs rawURL over HTTPS. Any domain owner chooses the URLs we fetch,
// so the fetch is fenced: https only, TLS 1.2 or newer, verified
// certificates, no cross-origin redirects, a timeout, a bounded body, an
// allowed Content-Type and, unless allowed, no private destinations. Only
// status 200 is accepted.
func (c *Client) fetch(ctx context.Context, rawURL string, media ...string) (_ *fetched, err error) {
	ctx, span := c.tel.Start(ctx, "agentpass.discovery.fetch", trace.SpanKindClient)
	defer func() { telemetry.End(span, telemetry.ErrOutcome(err)) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &FetchError{URL: rawURL, Err: err}
	}
	req.Header.Set("Accept", strings.Join(media, ", "))
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &FetchError{URL: rawURL, Err: stripURLError(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &FetchError{URL: rawURL, StatusCode: resp.StatusCode, Reason: "unexpected status"}
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		return nil, &FetchError{URL: rawURL, Reason: "not TLS 1.2 or newer"}
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || !contains(media, mt) {
		reason := "missing or malformed Content-Type"
		if err == nil {
			reason = fmt.Sprintf("Content-Type %q is not %s", trunc(mt, 64), strings.Join(media, " or "))
		}
		return nil, &FetchError{URL: rawURL, StatusCode: resp.StatusCode, Reason: reason}
	}
	if resp.ContentLength > c.maxBody {
		return nil, &FetchError{URL: rawURL, Reason: fmt.Sprintf("body larger than %d bytes", c.maxBody)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, &FetchError{URL: rawURL, Reason: "reading the body", Err: err}
	}
	if int64(len(body)) > c.maxBody {
		return nil, &FetchError{URL: rawURL, Reason: fmt.Sprintf("body larger than %d bytes", c.maxBody)}
	}
	return &fetched{body: body, lifetime: c.lifetime(resp.Header)}, nil
}

// lifetime is how long a response may be cached: Cache-Control max-age minus
// Age, 5 minutes without max-age, the MinTTL floor for "no-store" and
// "no-cache", all bounded by [MinTTL, MaxAge], so a document can neither be
// cached past what its server said nor (whatever it said) for long.
func (c *Client) lifetime(h http.Header) time.Duration {
	d := c.defaultMaxAge
	for _, line := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return c.minTTL
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
				if err != nil || n < 0 {
					return c.minTTL // a malformed directive is treated as stale
				}
				d = time.Duration(min(n, int64(c.maxAge/time.Second))) * time.Second
			}
		}
	}
	if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
		d -= time.Duration(min(age, int64(c.maxAge/time.Second))) * time.Second
	}
	return clamp(d, c.minTTL, c.maxAge)
}

// stripURLError removes the *url.Error layer, whose text repeats the URL.
func stripURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// checkFetchURL checks a URL before any fetch and returns its cache key
// (scheme and host lower-cased).
func checkFetchURL(rawURL string) (string, error) {
	if err := pass.CheckHTTPSURL(rawURL); err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrInvalidName, trunc(rawURL, 256), err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrInvalidName, trunc(rawURL, 256), err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	return u.String(), nil
}

// maxFetchKeys bounds the memo of checked URLs; past it the memo starts
// again empty. Peers can name new URLs (an issuance request's e-mail domain
// leads to its own configuration URL), but filling the memo only makes
// later calls parse their URL once more: nothing is refused.
const maxFetchKeys = 4096

// fetchKeys memoises checkFetchURL: every cached call would otherwise parse
// and re-serialise the same few URLs.
type fetchKeys struct {
	mu sync.Mutex
	m  map[[2]string]string
}

// key returns the cache key of kind at rawURL (kind "" for the bare
// normalised URL), checking rawURL the first time it is seen.
func (f *fetchKeys) key(kind, rawURL string) (string, error) {
	mk := [2]string{kind, rawURL}
	f.mu.Lock()
	k, ok := f.m[mk]
	f.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := checkFetchURL(rawURL)
	if err != nil {
		return "", err
	}
	if kind != "" {
		k = kind + " " + k
	}
	f.mu.Lock()
	if f.m == nil || len(f.m) >= maxFetchKeys {
		f.m = make(map[[2]string]string)
	}
	f.m[mk] = k
	f.mu.Unlock()
	return k, nil
}

// cachedFetch returns the decoded document at rawURL from the cache, or
// fetches, decodes and caches it. Concurrent calls share one fetch. A failed
// fetch is not cached, and an expired document is never served.
func (c *Client) cachedFetch(ctx context.Context, kind, rawURL string, media []string, decode func([]byte) (any, error)) (any, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	key, err := c.fetchKeys.key(kind, rawURL)
	if err != nil {
		return nil, err
	}
	if v, ok := c.docCache.get(key, c.now()); ok {
		return v, nil
	}
	v, err := c.flight(ctx, key, c.fetchTimeout+time.Second, func(ctx context.Context) (any, error) {
		if v, ok := c.docCache.get(key, c.now()); ok {
			return v, nil
		}
		f, err := c.fetch(ctx, rawURL, media...)
		if err != nil {
			c.log.LogAttrs(ctx, levelWarn, "discovery: fetch failed", strAttr("url", rawURL), errAttr(err))
			return nil, err
		}
		doc, err := decode(f.body)
		if err != nil {
			c.log.LogAttrs(ctx, levelWarn, "discovery: invalid document", strAttr("url", rawURL), errAttr(err))
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidDocument, rawURL, err)
		}
		c.docCache.put(key, doc, c.now().Add(f.lifetime))
		return doc, nil
	})
	if err != nil {
		if !errors.Is(err, ErrFetchFailed) && !errors.Is(err, ErrInvalidDocument) {
			err = &FetchError{URL: rawURL, Err: err} // the caller's context ended
		}
		return nil, err
	}
	return v, nil
}

// ServiceConfiguration fetches, validates and caches the Service
// configuration at configURL (§4.1). The document must pass
// pass.ServiceConfiguration.Validate: version with a supported major
// (unknown members and higher minors are accepted), kind "service",
// https:// URLs. It does not check service.origin; see
// [Client.DiscoverService]. The result is a copy the caller may modify.
func (c *Client) ServiceConfiguration(ctx context.Context, configURL string) (*pass.ServiceConfiguration, error) {
	shared, err := c.serviceConfiguration(ctx, configURL)
	if err != nil {
		return nil, err
	}
	out := new(pass.ServiceConfiguration)
	copyServiceConfiguration(out, shared)
	return out, nil
}

// serviceConfiguration is ServiceConfiguration without the copy: the
// cached document, which the caller must not modify.
func (c *Client) serviceConfiguration(ctx context.Context, configURL string) (*pass.ServiceConfiguration, error) {
	v, err := c.cachedFetch(ctx, "service", configURL, acceptJSON, decodeServiceConfiguration)
	if err != nil {
		return nil, err
	}
	return v.(*pass.ServiceConfiguration), nil
}

// acceptJSON is the accepted Content-Type of configurations (a variable,
// so a cached call allocates no slice).
var acceptJSON = []string{mediaJSON}

func decodeServiceConfiguration(b []byte) (any, error) {
	doc := new(pass.ServiceConfiguration)
	if err := pass.Decode(b, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// AuthorityConfiguration fetches, validates and caches the Authority
// configuration at configURL (§5.2), as [Client.ServiceConfiguration] does.
// It does not check trust_mode; see [Client.DiscoverEnterprise].
func (c *Client) AuthorityConfiguration(ctx context.Context, configURL string) (*pass.AuthorityConfiguration, error) {
	shared, err := c.authorityConfiguration(ctx, configURL)
	if err != nil {
		return nil, err
	}
	out := new(pass.AuthorityConfiguration)
	copyAuthorityConfiguration(out, shared)
	return out, nil
}

// authorityConfiguration is AuthorityConfiguration without the copy: the
// cached document, which the caller must not modify.
func (c *Client) authorityConfiguration(ctx context.Context, configURL string) (*pass.AuthorityConfiguration, error) {
	v, err := c.cachedFetch(ctx, "authority", configURL, acceptJSON, decodeAuthorityConfiguration)
	if err != nil {
		return nil, err
	}
	return v.(*pass.AuthorityConfiguration), nil
}

func decodeAuthorityConfiguration(b []byte) (any, error) {
	doc := new(pass.AuthorityConfiguration)
	if err := pass.Decode(b, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// copyServiceConfiguration makes *dst a copy of *src that shares nothing
// the caller may modify.
func copyServiceConfiguration(dst, src *pass.ServiceConfiguration) {
	*dst = *src
	if src.Trust.TrustedFederatedAuthorities != nil {
		dst.Trust.TrustedFederatedAuthorities = append([]pass.AuthorityRef(nil), src.Trust.TrustedFederatedAuthorities...)
	}
	if src.Trust.ServiceAuthority != nil {
		sa := *src.Trust.ServiceAuthority
		dst.Trust.ServiceAuthority = &sa
	}
}

// copyAuthorityConfiguration makes *dst a copy of *src that shares
// nothing the caller may modify.
func copyAuthorityConfiguration(dst, src *pass.AuthorityConfiguration) {
	*dst = *src
	if src.Policy != nil {
		p := *src.Policy
		if p.AllowServiceAuthorities != nil {
			b := *p.AllowServiceAuthorities
			p.AllowServiceAuthorities = &b
		}
		dst.Policy = &p
	}
	if src.Approval != nil {
		a := *src.Approval
		a.Modes = append([]string(nil), a.Modes...)
		dst.Approval = &a
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
