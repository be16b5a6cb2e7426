package main

import (
	"strings"
	"testing"
)

// TestParse: only BenchmarkThroughput lines count, in in-flight order, with
// ops/s read wherever the metric sits on the line.
func TestParse(t *testing.T) {
	in := `goos: linux
BenchmarkThroughput/redeem/inflight=32-2   2000  585620 ns/op  14.41 %bound  1708 ops/s  10.78 p50-ms
BenchmarkThroughput/redeem/inflight=4-2    2000  585620 ns/op  900.5 ops/s
BenchmarkValidate/memory/callers=1-2       100   1 ns/op 77 ops/s
BenchmarkThroughput/validate/inflight=1    10    1 ns/op 123 ops/s
PASS`
	got, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	r := got["redeem"]
	if len(got) != 2 || len(r) != 2 || r[0] != (point{4, 900.5}) || r[1] != (point{32, 1708}) || got["validate"][0] != (point{1, 123}) {
		t.Fatalf("parse = %v", got)
	}
	out := svg([]series{{"redeem (after)", r}})
	if !strings.HasPrefix(out, "<svg") || !strings.Contains(out, "redeem (after)") || strings.Count(out, "<circle") != 2 {
		t.Fatalf("svg:\n%s", out)
	}
}

func TestNiceCeil(t *testing.T) {
	for v, want := range map[float64]float64{0: 1, 7: 10, 1708: 2000, 4992: 5000, 5001: 10000, 100: 100} {
		if got := niceCeil(v); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", v, got, want)
		}
	}
}
