package discovery

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/agentpass-go/agentpass/internal/dnstxt"
	"github.com/agentpass-go/agentpass/pass"
)

// errorText is every message selectValue may produce: names and counts,
// never a value.
var errorText = regexp.MustCompile(`^discovery: (no record|delegation disabled by the domain|invalid TXT record): _agentpass\.x\.example\.` +
	`(: (the value is not |none of \d+ values is )an https:// URL( or "none")?|: \d+ of \d+ values are usable, exactly one must be)?$`)

// FuzzSelectValue checks the TXT rules on arbitrary record sets (values
// separated by '\n' in the input): no panic; a URL result is a valid https
// URL that is one of the values and the only usable one; every error is
// exactly one of the documented classes (G-11, X-DNS-5, X-DNS-8).
func FuzzSelectValue(f *testing.F) {
	for _, seed := range []string{
		cfgURL, "none", "None", " none", "none ", "", "http://a.example/ap", "yes",
		cfgURL + "\nnone", "v=spf1 -all\n" + cfgURL, cfgURL + "\n" + cfgURL,
		"https://u:p@a.example/", "https://a.example/#x", "https:///x", "https://a.example:99999/",
		"https://[::1]/", "https://a.example/\x00", "https://a%2e.example/", "https://ex ample/",
		"https://a.example/\"x", "none\nnone",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		values := strings.Split(in, "\n")
		for _, kind := range []recordKind{serviceRecord, enterpriseRecord} {
			u, err := selectValue("_agentpass.x.example.", values, kind)
			if err == nil {
				if pass.CheckHTTPSURL(u) != nil {
					t.Fatalf("accepted %q, not an https URL", u)
				}
				n := 0
				seen := map[string]bool{}
				for _, v := range values {
					if seen[v] {
						continue
					}
					seen[v] = true
					if _, _, ok := parseValue(v, kind); ok {
						n++
					}
					if v == u {
						n += 100
					}
				}
				if n != 101 {
					t.Fatalf("accepted %q from %q (score %d)", u, values, n)
				}
				continue
			}
			classes := 0
			for _, s := range []error{ErrNoRecord, ErrDelegationDisabled, ErrInvalidRecord} {
				if errors.Is(err, s) {
					classes++
				}
			}
			if classes != 1 {
				t.Fatalf("error %v is in %d classes", err, classes)
			}
			if kind == serviceRecord && errors.Is(err, ErrDelegationDisabled) {
				t.Fatal(`a Service record read as "none"`)
			}
			if errors.Is(err, ErrNoRecord) && len(values) > 0 {
				t.Fatal("values read as no record")
			}
			if !errorText.MatchString(err.Error()) {
				t.Fatalf("unexpected error text (a value echoed?): %v", err)
			}
		}
	})
}

// FuzzUnescapeTXT checks that a raw character-string survives miekg/dns's
// packing and unpacking and our unescaping byte for byte.
func FuzzUnescapeTXT(f *testing.F) {
	for _, seed := range []string{"", cfgURL, `a"b\c`, "\x00\xff\x7f", `\065`, "none", " x "} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 255 {
			raw = raw[:255]
		}
		rr := &dns.TXT{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{dnstxt.Escape(raw)}}
		buf := make([]byte, 2048)
		off, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("pack: %v", err)
		}
		back, _, err := dns.UnpackRR(buf[:off], 0)
		if err != nil {
			t.Fatalf("unpack: %v", err)
		}
		if got := unescapeTXT(back.(*dns.TXT).Txt[0]); got != raw {
			t.Fatalf("round trip %q -> %q", raw, got)
		}
	})
}

// FuzzParseJWKS: no panic, and an accepted set holds only valid public keys.
func FuzzParseJWKS(f *testing.F) {
	ec := ecKey(f)
	f.Add(jwksJSON(f, pub("ec", &ec.PublicKey)))
	f.Add(jwksJSON(f, pub("ec", ec)))
	f.Add(`{"keys":[{"kty":"oct","k":"AAAA"}]}`)
	f.Add(`{"keys":[{"kty":"XYZ"}]}`)
	f.Add(`{"keys":[]}`)
	f.Add(`{"keys":null}`)
	f.Add(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		set, err := parseJWKS([]byte(body))
		if err != nil {
			return
		}
		for _, k := range set.Keys {
			if !k.Valid() || !k.IsPublic() {
				t.Fatalf("accepted key %+v", k)
			}
			if _, ok := k.Key.([]byte); ok {
				t.Fatal("accepted a symmetric key")
			}
		}
	})
}

// FuzzLifetime: whatever the headers, a document is cached between the floor
// and the one-hour cap (G-28).
func FuzzLifetime(f *testing.F) {
	for _, s := range []string{"max-age=60", "no-store", "max-age=99999999999999999999", "max-age=-1", "MAX-AGE=5, private", `max-age="30"`, ""} {
		f.Add(s, "0")
	}
	f.Add("max-age=100", "99999999999")
	c, err := New(Config{Nameservers: []string{"127.0.0.1:53"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cc, age string) {
		h := http.Header{"Cache-Control": {cc}, "Age": {age}}
		d := c.lifetime(h)
		if d < defaultMinTTL || d > time.Hour {
			t.Fatalf("lifetime(%q, age %q) = %v", cc, age, d)
		}
	})
}
