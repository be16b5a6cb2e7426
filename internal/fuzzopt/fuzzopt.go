// Package fuzzopt sets the fuzzing defaults of the SDK's test binaries.
//
// Go minimizes every input that finds new coverage by trying O(n²)
// shorter candidates, for up to 60 s by default. Fuzz targets that run a
// whole handler on inputs of several hundred bytes (a signed token, an
// issuance request, a template file) then spend nearly all their time
// minimizing, and report close to 0 exec/s. Main bounds minimization so
// that they keep exploring; an explicit -fuzzminimizetime still wins (use
// it to shrink a crasher further).
package fuzzopt

import (
	"flag"
	"os"
	"testing"
)

// MinimizeTime is the default -test.fuzzminimizetime that Main sets.
const MinimizeTime = "250ms"

// Main is a TestMain: it bounds input minimization, then runs m and exits
// with its code.
func Main(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.fuzzminimizetime" })
	if !explicit {
		if err := flag.Set("test.fuzzminimizetime", MinimizeTime); err != nil {
			panic("fuzzopt: " + err.Error()) // the testing package renamed its flag
		}
	}
	os.Exit(m.Run())
}
