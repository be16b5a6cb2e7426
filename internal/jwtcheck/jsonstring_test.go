package jwtcheck

import (
	"encoding/json"
	"testing"
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
