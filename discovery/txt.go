package discovery

import (
	"fmt"
	"strings"

	"github.com/agentpass-go/agentpass/pass"
)

// recordKind says which values a TXT record may hold.
type recordKind int

const (
	serviceRecord    recordKind = iota // an https:// URL
	enterpriseRecord                   // an https:// URL or "none"
)

// Name prefixes of the two TXT records: Service discovery by host,
// enterprise discovery by e-mail domain.
const (
	servicePrefix    = "_agentpass-service."
	enterprisePrefix = "_agentpass."
)

// valueNone is the enterprise record value that disables delegation. It is
// compared exactly: no trimming, no case folding, so a near-miss such as
// "None " is an invalid record rather than a silent "none".
const valueNone = "none"

// parseValue reports whether one TXT value (the concatenated
// character-strings of one record) is usable, and whether it is "none".
//
// A URL must be an absolute https:// URL with a host and without user
// information or fragment, made only of the characters RFC 3986 allows (no
// spaces, quotes, control or non-ASCII bytes; no trimming is done, so
// surrounding white space makes a value invalid).
func parseValue(v string, kind recordKind) (url string, none, ok bool) {
	if kind == enterpriseRecord && v == valueNone {
		return "", true, true
	}
	for i := 0; i < len(v); i++ {
		if !uriChar(v[i]) {
			return "", false, false
		}
	}
	if pass.CheckHTTPSURL(v) != nil {
		return "", false, false
	}
	return v, false, true
}

// selectValue applies the spec's rules to the values of all TXT records at a
// name:
//
//  1. no values: [ErrNoRecord];
//  2. identical values count once (a DNS RRset has no duplicates, RFC 2181);
//  3. exactly one value parses: that value, or [ErrDelegationDisabled] when
//     it is "none";
//  4. otherwise (none parses, or several do): [ErrInvalidRecord], a
//     discovery failure and never "no record": an ambiguous or garbled
//     record must not open the fallback to other Authorities.
//
// Error texts carry counts, never the remote values.
func selectValue(name string, values []string, kind recordKind) (string, error) {
	if len(values) == 0 {
		return "", fmt.Errorf("%w: %s", ErrNoRecord, name)
	}
	var (
		found  string
		isNone bool
		parsed int
		seen   = make(map[string]bool, len(values))
	)
	for _, v := range values {
		if seen[v] {
			continue
		}
		seen[v] = true
		u, none, ok := parseValue(v, kind)
		if !ok {
			continue
		}
		parsed++
		found, isNone = u, none
	}
	want := "an https:// URL"
	if kind == enterpriseRecord {
		want = `an https:// URL or "none"`
	}
	switch {
	case parsed == 1 && isNone:
		return "", fmt.Errorf("%w: %s", ErrDelegationDisabled, name)
	case parsed == 1:
		return found, nil
	case len(seen) == 1:
		return "", fmt.Errorf("%w: %s: the value is not %s", ErrInvalidRecord, name, want)
	case parsed == 0:
		return "", fmt.Errorf("%w: %s: none of %d values is %s", ErrInvalidRecord, name, len(seen), want)
	default:
		return "", fmt.Errorf("%w: %s: %d of %d values are usable, exactly one must be", ErrInvalidRecord, name, parsed, len(seen))
	}
}

// unescapeTXT turns a character-string as miekg/dns presents it (\" \\ and
// \DDD escapes) back into its raw bytes.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		i++
		if i == len(s) {
			break
		}
		if i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) {
			b = append(b, (s[i]-'0')*100+(s[i+1]-'0')*10+(s[i+2]-'0'))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// uriChar reports whether c may appear in an RFC 3986 URI (unreserved,
// reserved or '%').
func uriChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~:/?#[]@!$&'()*+,;=%", c) >= 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
