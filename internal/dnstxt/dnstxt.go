// Package dnstxt holds the TXT presentation-form escaping shared by the
// loopback DNS server and the discovery fuzz tests.
package dnstxt

import "strings"

// Escape converts raw bytes to the presentation form miekg/dns packs in a
// TXT character-string: a backslash before '"' and '\\', \DDD for bytes
// outside printable ASCII. SetTXT applies it; tests that build dns.TXT
// records themselves use it so a value reaches the wire byte for byte.
func Escape(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteByte('\\')
			b.WriteByte('0' + c/100)
			b.WriteByte('0' + c/10%10)
			b.WriteByte('0' + c%10)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
