package jwtcheck

import (
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
