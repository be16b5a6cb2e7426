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
	if err := CheckHTTPSURL(rawURL); err != nil {
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
	if err := CheckHTTPSURL(s); err != nil {
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
	if err := CheckHTTPSURL(rawURL); err != nil {
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
