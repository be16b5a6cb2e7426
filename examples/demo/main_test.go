package main

import (
	"strings"
	"testing"
)

// TestDemo runs the whole demo: every step asserts the protocol's behaviour
// (H-*, S-RES-*, S-RED-*, S-BRW-3, S-AUTHZ-6, X-DNS-7, S-RES-8), so a
// regression anywhere in the three roles fails here too.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for a few seconds")
	}
	var out strings.Builder
	if err := run(&out, false); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "All 8 steps behaved") {
		t.Fatalf("unexpected narration:\n%s", out.String())
	}
}
