package pass

import (
	"net/netip"
	"strings"
	"unicode"

	"golang.org/x/net/idna"
)

// dnsProfile converts a domain to the A-label form used in DNS queries
// (IDNA2008 lookup rules, with the lookup-time mapping applied).
var dnsProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.VerifyDNSLength(true))

// CanonicalDomain lower-cases a domain name and converts an internationalised
// name to its ASCII (punycode) form for DNS use. It rejects IP literals,
// single-label names and anything that is not a valid host name.
func CanonicalDomain(domain string) (string, error) {
	d := strings.TrimSuffix(domain, ".")
	if d == "" {
		return "", invalid("domain", "empty")
	}
	if strings.HasPrefix(d, "[") {
		return "", invalid("domain", "IP literals are not allowed")
	}
	if mayBeIPv4(d) {
		if _, err := netip.ParseAddr(d); err == nil {
			return "", invalid("domain", "IP literals are not allowed")
		}
	}
	a := d
	if !plainLDH(d) {
		var err error
		a, err = dnsProfile.ToASCII(d)
		if err != nil {
			return "", invalid("domain", "not a valid domain name")
		}
		a = strings.ToLower(a)
		// The A-label form must itself be valid and stable: otherwise two
		// parties could derive different DNS names from one address.
		if again, err := dnsProfile.ToASCII(a); err != nil || again != a {
			return "", invalid("domain", "not a valid internationalised domain name")
		}
	}
	if !strings.Contains(a, ".") || strings.HasSuffix(a, ".") || strings.HasPrefix(a, ".") {
		return "", invalid("domain", "must have at least two labels")
	}
	for rest := a; rest != ""; {
		var label string
		label, rest, _ = strings.Cut(rest, ".")
		if label == "" || len(label) > 63 {
			return "", invalid("domain", "empty or over-long label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", invalid("domain", "invalid character in label")
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", invalid("domain", "label starts or ends with a hyphen")
		}
	}
	return a, nil
}

// mayBeIPv4 reports whether d ends in an all-digit label, the only case in
// which it can parse as an IPv4 address (IPv6 literals contain ':' and fail
// the label rules anyway).
func mayBeIPv4(d string) bool {
	last := d[strings.LastIndexByte(d, '.')+1:]
	if last == "" {
		return false
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

// plainLDH reports whether d is already in canonical form: lower-case ASCII
// letters, digits, hyphens and dots, with no A-label ("xn--") that IDNA would
// have to check. Such names skip the IDNA conversion, which dominates the
// cost of a cached DNS lookup.
func plainLDH(d string) bool {
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return !strings.Contains(d, "xn--")
}

// SplitEmail validates an e-mail address and returns its local part and its
// domain in canonical DNS form (see [CanonicalDomain]). It splits at the last
// "@" and rejects empty parts, white space, control characters and IP-literal
// domains (gap G-25).
func SplitEmail(email string) (local, domain string, err error) {
	if email == "" {
		return "", "", invalid("email", "empty")
	}
	if len(email) > 254 {
		return "", "", invalid("email", "longer than 254 bytes")
	}
	for _, r := range email {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", "", invalid("email", "contains white space or control characters")
		}
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return "", "", invalid("email", "must be local@domain")
	}
	local = email[:at]
	if len(local) > 64 || strings.ContainsAny(local, "@<>()[]\\,;:\"") {
		return "", "", invalid("email", "invalid local part")
	}
	domain, err = CanonicalDomain(email[at+1:])
	if err != nil {
		return "", "", invalid("email", "invalid domain")
	}
	return local, domain, nil
}

// EmailDomain returns the canonical DNS domain of an e-mail address, the
// {user_email_domain} of enterprise discovery.
func EmailDomain(email string) (string, error) {
	_, d, err := SplitEmail(email)
	return d, err
}

// SameEmail reports whether two addresses name the same mailbox: the local
// parts compared case-insensitively (as G-12 recommends) and the domains in
// canonical form.
func SameEmail(a, b string) bool {
	la, da, err1 := SplitEmail(a)
	lb, db, err2 := SplitEmail(b)
	return err1 == nil && err2 == nil && da == db && strings.EqualFold(la, lb)
}

func checkEmail(field, email string) error {
	if email == "" {
		return missing(field)
	}
	if _, _, err := SplitEmail(email); err != nil {
		return invalid(field, err.(*FieldError).Reason)
	}
	return nil
}
