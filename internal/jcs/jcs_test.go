package jcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestCanonicalize(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"sorted members", `{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{"whitespace", " { \"a\" : [ 1 , true , null ] } ", `{"a":[1,true,null]}`},
		{"nested", `{"z":{"y":"x","a":[]},"a":{}}`, `{"a":{},"z":{"a":[],"y":"x"}}`},
		// RFC 8785 §3.2.3: UTF-16 code unit order puts U+1F600 (surrogates
		// D83D..) before U+FB33 although its UTF-8 bytes sort after.
		{"utf16 order", `{"\ufb33":1,"😀":2}`, `{"😀":2,"דּ":1}`},
		{"escapes", `"\u0041\u00e9\u2028\/\"\\\b\f\n\r\t\u0001\u001f"`, "\"A\u00e9\u2028/\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\""},
		{"negative zero", `-0`, `0`},
		{"max safe", `9007199254740992`, `9007199254740992`},
		{"min safe", `-9007199254740992`, `-9007199254740992`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tc.in))
			if err != nil {
				t.Fatalf("Canonicalize(%s): %v", tc.in, err)
			}
			if string(got) != tc.want {
				t.Fatalf("Canonicalize(%s) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestCanonicalizeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in    string
		unsupported bool
	}{
		{"float", `1.5`, true},
		{"exponent", `1e3`, true},
		{"beyond 2^53", `9007199254740993`, true},
		{"below -2^53", `-9007199254740993`, true},
		{"huge", `123456789012345678901234567890`, true},
		{"invalid utf8", "\"\xff\"", true},
		{"duplicate", `{"a":1,"a":2}`, true},
		{"too deep", string(bytes.Repeat([]byte("["), 100)) + string(bytes.Repeat([]byte("]"), 100)), true},
		{"trailing", `{} {}`, false},
		{"truncated", `{"a":`, false},
		{"empty", ``, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Canonicalize([]byte(tc.in))
			if err == nil {
				t.Fatalf("Canonicalize(%q) succeeded", tc.in)
			}
			if got := errors.Is(err, ErrUnsupported); got != tc.unsupported {
				t.Fatalf("Canonicalize(%q) = %v; errors.Is(ErrUnsupported) = %v, want %v", tc.in, err, got, tc.unsupported)
			}
		})
	}
}

func TestMarshal(t *testing.T) {
	type scope []string
	v := map[string]any{
		"seq": int64(3), "n": json.Number("7"), "s": scope{"b", "a"}, "nil": nil,
		"m": map[string]string{"y": "1", "x": "<&>"}, "ok": true, "u": uint8(9),
	}
	got, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"m":{"x":"<&>","y":"1"},"n":7,"nil":null,"ok":true,"s":["b","a"],"seq":3,"u":9}`
	if string(got) != want {
		t.Fatalf("Marshal = %s\nwant      %s", got, want)
	}
	for _, bad := range []any{1.5, float32(1), map[int]string{1: "a"}, "\xff", int64(1 << 54), struct{}{}} {
		if _, err := Marshal(bad); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Marshal(%#v) = %v, want ErrUnsupported", bad, err)
		}
	}
}

// FuzzCanonicalize: whatever the input, no panic; a canonical form is
// valid JSON with the same meaning as the input, and canonical again.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		`{"seq":1,"at":"2026-11-23T09:00:00Z","type":"requested","by":"system","version":1,"prev":""}`,
		`{"details":{"scope":["tickets:read"],"cause":"cascade"},"hash":"sha256:00"}`,
		`[1,-0,"\u00e9",{"\ud83d\ude00":null}]`, `"\u2028"`, `1.0`, `{"a":1,"a":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Canonicalize(b)
		if err != nil {
			return
		}
		again, err := Canonicalize(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %s -> %s (%v)", out, again, err)
		}
		var x, y any
		if err := json.Unmarshal(b, &x); err != nil {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if err := json.Unmarshal(out, &y); err != nil {
			t.Fatalf("canonical form %q is not JSON: %v", out, err)
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("meaning changed: %q -> %q", b, out)
		}
	})
}

// FuzzCompareUTF16: the walking comparison orders any two names as their
// UTF-16 code units do (RFC 8785 §3.2.3), byte strings that are not UTF-8
// included, so history records hash the bytes they hashed before.
func FuzzCompareUTF16(f *testing.F) {
	for _, p := range [][2]string{{"a", "b"}, {"", "a"}, {"ab", "a"}, {"\ufb33", "\U0001f600"}, {"\U0001f600", "\U0001f601"},
		{"\U00010000", "\uffff"}, {"\ue000", "\U0010ffff"}, {"\xff", "\ufffd"}, {"a\xffb", "a\ufffdc"}, {"€", "\U0001d11e"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		want := slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
		if got := compareUTF16(a, b); got != want {
			t.Fatalf("compareUTF16(%q, %q) = %d, UTF-16 order %d", a, b, got, want)
		}
	})
}

// FuzzMarshalFastPath: Marshal, which writes the types of history entries
// without reflection, gives the bytes and the refusals of the reflecting
// appendValue on any value decoded from JSON (as any, with json.Number),
// with string arrays as []string when strs is set, nested up to beyond
// the depth limit.
func FuzzMarshalFastPath(f *testing.F) {
	for _, s := range []string{`{"a":[1,"x",null,true],"b":{"c":"\ud83d\ude00"}}`, `[]`, `null`, `"\u00e9"`, `[["a","b"],[]]`,
		`{"details":{"scope":["r","w"],"n":9007199254740993}}`, `1.5`, strings.Repeat(`{"a":`, 33) + `1` + strings.Repeat(`}`, 33),
		strings.Repeat(`[`, 32) + `"x"` + strings.Repeat(`]`, 32), strings.Repeat(`[`, 33) + `null` + strings.Repeat(`]`, 33)} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, strs bool) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil {
			return
		}
		if strs {
			v = stringSlices(v)
		}
		got, gotErr := Marshal(v)
		want, wantErr := appendValue(nil, reflect.ValueOf(v), 0)
		if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("Marshal(%s) = %s, %v; reflection gives %s, %v", b, got, gotErr, want, wantErr)
		}
	})
}

// stringSlices replaces every array of strings in v by a []string.
func stringSlices(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = stringSlices(e)
		}
	case []any:
		ss := make([]string, 0, len(v))
		for i, e := range v {
			v[i] = stringSlices(e)
			if s, ok := v[i].(string); ok {
				ss = append(ss, s)
			}
		}
		if len(ss) == len(v) {
			return ss
		}
	}
	return v
}

func BenchmarkMarshal(b *testing.B) {
	entry := map[string]any{"type": "redeemed", "by": "service:https://app.example", "seq": 3, "version": 2,
		"at": "2026-11-26T12:00:00Z", "details": map[string]any{"authorization_id": "az_0123456789", "scope": []string{"mail:read", "mail:list"}}}
	for b.Loop() {
		if _, err := Marshal(entry); err != nil {
			b.Fatal(err)
		}
	}
}

// Marshal and the reflecting path refuse at the same depth, whatever the
// innermost value (a nil one is checked one level less deep).
func TestMarshalDepthAsReflection(t *testing.T) {
	for levels := 29; levels <= 35; levels++ {
		for _, inner := range []string{`1`, `null`, `"x"`, `[]`, `["a"]`} {
			for _, kind := range [][2]string{{`{"a":`, `}`}, {`[`, `]`}} {
				doc := strings.Repeat(kind[0], levels) + inner + strings.Repeat(kind[1], levels)
				for _, strs := range []bool{false, true} {
					d := json.NewDecoder(strings.NewReader(doc))
					d.UseNumber()
					var v any
					if err := d.Decode(&v); err != nil {
						t.Fatal(err)
					}
					if strs {
						v = stringSlices(v)
					}
					got, gotErr := Marshal(v)
					want, wantErr := appendValue(nil, reflect.ValueOf(v), 0)
					if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
						t.Errorf("%d levels of %s around %s (strs %v): Marshal %v, reflection %v", levels, kind[0], inner, strs, gotErr, wantErr)
					}
				}
			}
		}
	}
}
