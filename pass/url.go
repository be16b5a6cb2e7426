package pass

import (
	"net"
	"net/url"
	"strings"
)

// CheckHTTPSURL reports whether s is an absolute https:// URL with a host and
// without user information or fragment, as every URL of the protocol must be:
// a plain http:// URL would let anyone on the path change a configuration or
// read a pass.
func CheckHTTPSURL(s string) error {
	if _, _, _, ok := canonicalHTTPS(s); ok {
		return nil
	}
	return checkHTTPSURLSlow(s)
}

func checkHTTPSURLSlow(s string) error {
	if !strings.HasPrefix(s, "https://") {
		return invalid("url", "must be an https:// URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		return invalid("url", "not a valid URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return invalid("url", "has no host")
	}
	if u.User != nil {
		return invalid("url", "must not contain user information")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return invalid("url", "must not contain a fragment")
	}
	return nil
}

func checkURL(field, s string) error {
	if s == "" {
		return missing(field)
	}
	if err := CheckHTTPSURL(s); err != nil {
		return invalid(field, err.(*FieldError).Reason)
	}
	return nil
}

func checkOptionalURL(field, s string) error {
	if s == "" {
		return nil
	}
	return checkURL(field, s)
}

// Origin returns the ASCII serialisation of the origin of an https:// URL:
// lower-case scheme and host, the port only when it is not 443, no path
// (so "HTTPS://Example.com:443/x" and "https://example.com" are one origin).
// Origins are compared with ==, after this serialisation.
func Origin(rawURL string) (string, error) {
	if host, port, _, ok := canonicalHTTPS(rawURL); ok {
		// The origin is a prefix of the URL itself: no allocation.
		n := len("https://") + len(host)
		if port != "" && port != "443" {
			n += 1 + len(port)
		}
		return rawURL[:n], nil
	}
	return originSlow(rawURL)
}

func originSlow(rawURL string) (string, error) {
	if err := checkHTTPSURLSlow(rawURL); err != nil {
		return "", err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", invalid("url", "not a valid URL")
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && p != "443" {
		host = net.JoinHostPort(strings.Trim(host, "[]"), p)
	}
	return "https://" + host, nil
}

// CheckOrigin reports whether s is itself an origin: an https:// URL with no
// path (other than "/"), query or fragment.
func CheckOrigin(s string) error {
	if _, _, rest, ok := canonicalHTTPS(s); ok && (rest == "" || rest == "/") {
		return nil
	}
	return checkOriginSlow(s)
}

func checkOriginSlow(s string) error {
	if err := checkHTTPSURLSlow(s); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Opaque != "" {
		return invalid("origin", "must be scheme://host[:port] without path or query")
	}
	return nil
}

// SameOrigin reports whether two https:// URLs have the same origin.
func SameOrigin(a, b string) bool {
	oa, err1 := Origin(a)
	ob, err2 := Origin(b)
	return err1 == nil && err2 == nil && oa == ob
}

// Host returns the host (without port) of an https:// URL in lower case: the
// {service_host} of Service discovery.
func Host(rawURL string) (string, error) {
	if host, _, _, ok := canonicalHTTPS(rawURL); ok {
		return host, nil
	}
	return hostSlow(rawURL)
}

func hostSlow(rawURL string) (string, error) {
	if err := checkHTTPSURLSlow(rawURL); err != nil {
		return "", err
	}
	u, _ := url.Parse(rawURL)
	return strings.ToLower(u.Hostname()), nil
}

func checkOriginField(field, s string) error {
	if s == "" {
		return missing(field)
	}
	if err := CheckOrigin(s); err != nil {
		return invalid(field, err.(*FieldError).Reason)
	}
	return nil
}

// canonicalHTTPS splits s when it has the form nearly every URL of the
// protocol has: "https://", a lower-case host of letters, digits, dots and
// hyphens, an optional port of digits, then nothing or a path and query of
// plain characters (no escapes, no fragment). net/url reads such a URL the
// same way (FuzzURLFastPath compares both on every input), so the checks
// above answer it without url.Parse, which allocates several times per
// call on paths that see the same few URLs on every request. Anything else
// takes the slow path.
func canonicalHTTPS(s string) (host, port, rest string, ok bool) {
	const scheme = "https://"
	if len(s) <= len(scheme) || s[:len(scheme)] != scheme {
		return "", "", "", false
	}
	a := s[len(scheme):]
	end := len(a)
	for i := 0; i < len(a); i++ {
		if a[i] == '/' || a[i] == '?' {
			end = i
			break
		}
	}
	host, port, hasPort := strings.Cut(a[:end], ":")
	if host == "" || hasPort && (port == "" || len(port) > 5) {
		return "", "", "", false
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return "", "", "", false
		}
	}
	for i := 0; i < len(port); i++ {
		if c := port[i]; c < '0' || c > '9' {
			return "", "", "", false
		}
	}
	rest = a[end:]
	for i := 0; i < len(rest); i++ {
		if !plainURLByte(rest[i]) {
			return "", "", "", false
		}
	}
	return host, port, rest, true
}

// plainURLByte reports whether c may appear unescaped in the path or query
// of a canonical URL: the unreserved and sub-delimiter characters of RFC
// 3986 with ':', '@', '/' and '?'.
func plainURLByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0
}
