package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

var validCases = []string{
	``, ` `, `{}`, ` { } `, `[]`, `[ ]`, `{"a":1}`, `{"a" : [1, 2.5, -0, 1e9, 1E-2, 2e+3, true, false, null]}`,
	`"\u00e9\n\"\\\/\b\f\r\t"`, `"\u00g0"`, `"\u12"`, `"\x"`, `"a` + "\x01" + `"`, `"` + "\xff\xfe" + `"`, "\"\x7f\"",
	`01`, `-`, `-01`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0.0e0`, `-0.5E-10`, `1true`, `tru`, `truex`, `nul`, `falsey`,
	`[1,]`, `{"a":1,}`, `{,}`, `[,1]`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{1:2}`, `[1 2]`, `{"a":1 "b":2}`, `[}`, `{]`,
	`[[[]]]`, `[[[]]`, `[]]`, `{} {}`, `1 2`, "\t\r\n[1]\n", `"unterminated`, `"\`, `[` + `"a"` + `,{"b":[{}]}]`,
	"\xef\xbb\xbf{}", `{"a":{"b":{"c":[1,{"d":null}]}}}`, `[-]`, `[1e]`, `["\u"]`, `{"\u0041":1}`,
	"{\"\x01\":1}", `fals`, `[fals]`, `{"a":nul}`,
}

func TestValid(t *testing.T) {
	for _, c := range validCases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", c, got, want)
		}
	}
	// encoding/json's nesting limit, both containers: 10,000 levels are
	// valid, 10,001 are not.
	for _, open := range []string{"[", `{"a":`} {
		closeBy := map[string]string{"[": "]", `{"a":`: "}"}[open]
		for _, depth := range []int{9999, 10000, 10001} {
			doc := []byte(strings.Repeat(open, depth) + "1" + strings.Repeat(closeBy, depth))
			if got, want := Valid(doc), json.Valid(doc); got != want || want != (depth <= maxDepth) {
				t.Errorf("%d levels of %q: Valid = %v, encoding/json %v", depth, open, got, want)
			}
		}
	}
}

// Objects and arrays mixed across the words of Valid's bit stack of
// containers: the right closing bracket at every depth is valid, the
// other one invalid, as encoding/json says.
func TestValidMixedNesting(t *testing.T) {
	for _, depth := range []int{1, 63, 64, 65, 127, 128, 129, 9999, 10000} {
		var open, closeBy strings.Builder
		kinds := make([]bool, depth) // true: object
		for d := range depth {
			kinds[d] = (d*7+depth)%3 == 0
			if kinds[d] {
				open.WriteString(`{"k":`)
			} else {
				open.WriteString("[")
			}
		}
		for d := depth - 1; d >= 0; d-- {
			if kinds[d] {
				closeBy.WriteString("}")
			} else {
				closeBy.WriteString("]")
			}
		}
		doc := open.String() + "0" + closeBy.String()
		if !Valid([]byte(doc)) || !json.Valid([]byte(doc)) {
			t.Errorf("depth %d, mixed: Valid %v, encoding/json %v, want both true", depth, Valid([]byte(doc)), json.Valid([]byte(doc)))
		}
		for _, at := range []int{0, depth / 2, depth - 1} {
			wrong := []byte(doc)
			i := len(open.String()) + 1 + at // the closing bracket of depth-1-at
			if wrong[i] == '}' {
				wrong[i] = ']'
			} else {
				wrong[i] = '}'
			}
			if got, want := Valid(wrong), json.Valid(wrong); got || want {
				t.Errorf("depth %d, a wrong bracket %d from the innermost: Valid %v, encoding/json %v, want both false", depth, at, got, want)
			}
		}
	}
}

// FuzzValid: Valid and encoding/json.Valid give the same answer on every
// input, so that replacing one by the other changes no accept set.
func FuzzValid(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Add([]byte(`{"agentpass":{"value":"ap_x"},"authorization_id":"az_1","scope":["a:read"],"user":{"email":"u@example.com"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	doc := []byte(`{"valid":true,"type":"bearer_token","authorization_id":"az_0123456789abcdef","user":{"email":"someone@example.com"},` +
		`"agent":{"id":"agent-1"},"harness":{"id":"h"},"task":{"id":"t1","description":"read the \"inbox\" and summarise it"},` +
		`"scope":["mail:read","mail:list","calendar:read"],"expires_at":"2026-11-26T12:00:00Z","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}`)
	b.Run("jsonscan", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if !Valid(doc) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if !json.Valid(doc) {
				b.Fatal("invalid")
			}
		}
	})
}
