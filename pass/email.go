package pass

import (
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
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
// letters, digits, hyphens and dots, with no label that IDNA would have to
// check: an A-label ("xn--"), or any label with hyphens in its third and
// fourth positions, which IDNA refuses (reserved for other encodings). Such
// names skip the IDNA conversion, which dominates the cost of a cached DNS
// lookup, and the IDNA path refuses what the fast path leaves to it, so
// "ab--cd" and "AB--CD" get one answer.
func plainLDH(d string) bool {
	start := 0 // of the current label
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch {
		case c == '.':
			start = i + 1
		case c == '-' && i == start+3 && d[i-1] == '-':
			return false
		case !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'):
			return false
		}
	}
	return true
}

// SplitEmail validates an e-mail address and returns its local part and its
// domain in canonical DNS form (see [CanonicalDomain]). It splits at the last
// "@" and rejects empty parts, IP-literal domains, and any white space,
// control, format (invisible, such as U+200B or U+00AD), private-use or
// unassigned code point anywhere in the address, and a local part not in
// Unicode NFC: two addresses that look alike must not silently name one
// mailbox, nor two different ones.
func SplitEmail(email string) (local, domain string, err error) {
	if email == "" {
		return "", "", invalid("email", "empty")
	}
	if len(email) > 254 {
		return "", "", invalid("email", "longer than 254 bytes")
	}
	if !utf8.ValidString(email) {
		return "", "", invalid("email", "not valid UTF-8")
	}
	for _, r := range email {
		if r >= utf8.RuneSelf && !visibleRune(r) || r < utf8.RuneSelf && (r <= ' ' || r == 0x7f) {
			return "", "", invalid("email", "contains white space, control or invisible characters")
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
	if !isASCII(local) && !norm.NFC.IsNormalString(local) {
		// "josé" composed and decomposed display alike but differ in
		// bytes: accepting both would give one mailbox two canonical forms.
		return "", "", invalid("email", "local part is not in Unicode NFC")
	}
	raw := email[at+1:]
	domain, err = CanonicalDomain(raw)
	if err != nil {
		return "", "", invalid("email", "invalid domain")
	}
	if !plainLDH(raw) && !sameLabels(raw, domain) {
		// IDNA's lookup mapping folds full-width letters, compatibility
		// characters (the Kelvin sign) and the like onto other code points:
		// accepted silently, "ｃｏｒｐ.example" would be governed by
		// corp.example's Authority while the address shown to a person
		// differs. Only a domain that is already in its own Unicode form
		// (up to case) is accepted.
		return "", "", invalid("email", "domain is not in canonical Unicode form")
	}
	return local, domain, nil
}

// visibleRune reports whether a non-ASCII code point may appear in an
// address: letters, marks, digits, punctuation and symbols that are
// assigned, but no separator, control, format, surrogate or private-use
// code point.
func visibleRune(r rune) bool {
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S) && !unicode.Is(unicode.Co, r)
}

// sameLabels reports whether raw (a domain as written) is, label by label,
// either the A-label or the Unicode form of the canonical domain, ignoring
// case: ASCII letters are compared case-insensitively, other letters after
// Unicode lowering, but a non-ASCII code point that lowers to ASCII (U+212A
// KELVIN SIGN to k, U+0130 to i) never matches.
func sameLabels(raw, canonical string) bool {
	u, err := dnsProfile.ToUnicode(canonical)
	if err != nil {
		return false
	}
	raw = strings.TrimSuffix(raw, ".")
	var b strings.Builder
	for _, r := range raw {
		switch {
		case r < utf8.RuneSelf:
			b.WriteByte(byte(unicode.ToLower(r)))
		default:
			l := unicode.ToLower(r)
			if l < utf8.RuneSelf {
				return false
			}
			b.WriteRune(l)
		}
	}
	got, alabels, ulabels := strings.Split(b.String(), "."), strings.Split(canonical, "."), strings.Split(u, ".")
	if len(got) != len(alabels) || len(got) != len(ulabels) {
		return false
	}
	for i, l := range got {
		if l != alabels[i] && l != ulabels[i] {
			return false
		}
	}
	return true
}

// EmailDomain returns the canonical DNS domain of an e-mail address, the
// {user_email_domain} of enterprise discovery.
func EmailDomain(email string) (string, error) {
	_, d, err := SplitEmail(email)
	return d, err
}

// CanonicalEmail returns the one form under which an address is stored,
// compared and shown to an application: the local part with its ASCII
// letters lower-cased (other characters unchanged) and the domain in
// canonical DNS form. Two addresses name the same mailbox exactly when
// their canonical forms are equal (see [SameEmail]). A local part that is
// not in Unicode NFC is refused rather than normalised: its composed and
// decomposed spellings display alike, and the address must reach the
// mailbox as the user wrote it.
func CanonicalEmail(email string) (string, error) {
	local, domain, err := SplitEmail(email)
	if err != nil {
		return "", err
	}
	l := asciiLower(local)
	if l == local && domain == email[len(local)+1:] {
		// Already canonical, as nearly every address on the wire is: no copy.
		return email, nil
	}
	return l + "@" + domain, nil
}

// isASCII reports whether s is ASCII only, which is always in Unicode NFC.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// SameEmail reports whether two addresses name the same mailbox: the local
// parts compared case-insensitively in ASCII only (the common practice for
// mailboxes; Unicode case folding would make U+212A KELVIN SIGN equal to
// "k"), and the domains in canonical form.
func SameEmail(a, b string) bool {
	ca, err1 := CanonicalEmail(a)
	cb, err2 := CanonicalEmail(b)
	return err1 == nil && err2 == nil && ca == cb
}

// asciiLower lower-cases the ASCII letters of s and leaves every other
// byte as it is.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
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
