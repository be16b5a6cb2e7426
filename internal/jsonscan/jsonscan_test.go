package jsonscan

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestValueEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		at   int
		want int
	}{
		{`"a\"b" ,`, 0, 6},
		{`{"a":[1,{"b":"}"}]} x`, 0, 19},
		{`123,`, 0, 3},
		{`true}`, 0, 4},
		{`}`, 0, 0},
		{`[ ]`, 0, 3},
	} {
		if got := ValueEnd([]byte(tc.in), tc.at); got != tc.want {
			t.Errorf("ValueEnd(%q, %d) = %d, want %d", tc.in, tc.at, got, tc.want)
		}
	}
	if got := SkipSpace([]byte(" \t\r\n x"), 0); got != 5 {
		t.Errorf("SkipSpace = %d", got)
	}
	if got := StringEnd([]byte(`"unterminated\"`), 0); got != 15 {
		t.Errorf("StringEnd of an unterminated string = %d, want the length", got)
	}
}

// FuzzValueEnd: on any valid JSON value, ValueEnd from its first byte ends
// exactly where encoding/json says the value ends; on anything else it
// stays within the input.
func FuzzValueEnd(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b\"}"}`, `[1, [2, {"c": null}]]`, `"x"`, `-1.5e3`, `{"a":`, `"\\`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		i := SkipSpace(b, 0)
		end := ValueEnd(b, i)
		if end < i || end > len(b) {
			t.Fatalf("ValueEnd(%q) = %d outside [%d, %d]", b, end, i, len(b))
		}
		if !json.Valid(b) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if want := int(dec.InputOffset()); end != want {
			t.Fatalf("ValueEnd(%q) = %d, encoding/json ends the value at %d", b, end, want)
		}
	})
}
