package service_test

import (
	"flag"
	"os"
	"testing"
)

// TestMain bounds input minimization while fuzzing. Go minimizes every
// input that finds new coverage by trying O(n²) shorter candidates; the
// fuzz targets here run whole handlers on inputs of several hundred bytes
// (a signed SET, a redemption), so the default of 60 s per minimization
// held the fuzzer near 0 exec/s. An explicit -fuzzminimizetime still wins.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.fuzzminimizetime" })
	if !explicit {
		if err := flag.Set("test.fuzzminimizetime", "250ms"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
