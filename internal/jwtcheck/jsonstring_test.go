package jwtcheck

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/go-jose/go-jose/v4/jwt"
)

// FuzzJSONString: the plain-string fast path accepts exactly what
// encoding/json accepts and yields the same string.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{`"abc"`, `"é"`, `"\u00e9"`, `"a\"b"`, `"\xff"`, `"a` + "\x01" + `"`, `null`, `1`, `""`, `"`, ` "a"`, `"a" `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fast, ref string
		errFast := jsonString(raw, &fast)
		errRef := json.Unmarshal(raw, &ref)
		if (errFast == nil) != (errRef == nil) || fast != ref {
			t.Fatalf("jsonString(%q) = %q, %v; encoding/json: %q, %v", raw, fast, errFast, ref, errRef)
		}
	})
}

// FuzzClaimFastPaths: aud and the NumericDate claims are read without
// reflection when plain (#19); on every input they must accept and yield
// exactly what the reflection path (encoding/json into go-jose's types)
// does.
func FuzzClaimFastPaths(f *testing.F) {
	for _, s := range []string{`"https://ap.example"`, `["a","b"]`, `[ "a" , "b" ]`, `[]`, `["a",]`, `["a"] x`, `["a\"b"]`,
		`["\u0061"]`, `"\xff"`, `null`, `1`, `[1]`, `1700000000`, `0`, `01`, `-5`, `1.5`, `1e3`, `999999999999999`,
		`9999999999999999999`, `"1"`, `true`, `{}`, `[null]`, `["é"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fast, ref jwt.Audience
		errFast := decodeAudience(raw, &fast)
		errRef := json.Unmarshal(raw, &ref)
		if (errFast == nil) != (errRef == nil) || !slices.Equal(fast, ref) || (fast == nil) != (ref == nil) {
			t.Fatalf("decodeAudience(%q) = %q, %v; encoding/json: %q, %v", raw, fast, errFast, ref, errRef)
		}
		var fd, rd *jwt.NumericDate
		errFast = decodeNumericDate(raw, &fd)
		errRef = json.Unmarshal(raw, &rd)
		if (errFast == nil) != (errRef == nil) || (fd == nil) != (rd == nil) || fd != nil && *fd != *rd {
			t.Fatalf("decodeNumericDate(%q) = %v, %v; encoding/json: %v, %v", raw, fd, errFast, rd, errRef)
		}
	})
}

// FuzzJTIOf: Sign finds the jti of its claims by walking their members
// (#19); on every input it must find what a map of the members holds, and
// appendMember's direct writing must match encoding/json's.
func FuzzJTIOf(f *testing.F) {
	for _, s := range []string{`{"iss":"a","jti":"x"}`, `{"jti":"a","jti":"b"}`, `{"\u006ati":null}`, `{}`, `[]`, `{"jti":""} `,
		`{"a":{"jti":1}}`, `{"jti":1,}`, `null`, `{"x":"\xff","jti":{"a":[1,2]}}`} {
		f.Add([]byte(s), "jti", "AAAA")
	}
	f.Fuzz(func(t *testing.T, payload []byte, name, value string) {
		jti, ok, err := jtiOf(payload)
		var m map[string]json.RawMessage
		mErr := len(payload) == 0 || payload[0] != '{' || json.Unmarshal(payload, &m) != nil
		want, wantOK := m["jti"]
		if (err != nil) != mErr || ok != wantOK || string(jti) != string(want) {
			t.Fatalf("jtiOf(%q) = %q, %v, %v; map: %q, %v, %v", payload, jti, ok, err, want, wantOK, mErr)
		}
		if mErr {
			return
		}
		got := appendMember(payload, name, value)
		n, _ := json.Marshal(name)
		v, _ := json.Marshal(value)
		ref := append(append(append(append(appendMemberPrefix(payload), n...), ':'), v...), '}')
		if string(got) != string(ref) {
			t.Fatalf("appendMember(%q, %q, %q) = %q, want %q", payload, name, value, got, ref)
		}
	})
}

// appendMemberPrefix is the object without its closing brace, with a comma
// when it has members: the reference form of appendMember.
func appendMemberPrefix(obj []byte) []byte {
	out := append([]byte(nil), bytes.TrimRight(obj[:len(obj)-1], " \t\r\n")...)
	if !bytes.Equal(out, []byte("{")) {
		out = append(out, ',')
	}
	return out
}
