package fuzzopt

import (
	"flag"
	"testing"
	"time"
)

// Main sets a flag the testing package owns: it must still exist, and the
// default must parse as its duration form.
func TestMinimizeFlag(t *testing.T) {
	f := flag.Lookup("test.fuzzminimizetime")
	if f == nil {
		t.Fatal("the testing package has no -test.fuzzminimizetime flag")
	}
	if d, err := time.ParseDuration(MinimizeTime); err != nil || d <= 0 || d > 5*time.Second {
		t.Errorf("MinimizeTime %q: %v, %v", MinimizeTime, d, err)
	}
	old := f.Value.String()
	defer func() { _ = flag.Set(f.Name, old) }()
	if err := flag.Set(f.Name, MinimizeTime); err != nil {
		t.Errorf("the flag refuses %q: %v", MinimizeTime, err)
	}
}
