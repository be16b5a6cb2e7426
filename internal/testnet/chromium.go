package testnet

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium returns the Chromium executable for browser tests:
// $AGENTPASS_TEST_CHROMIUM when set (the test fails if it does not exist:
// CI sets it after installing Chromium, and a missing browser there is a
// failure, not a skip), else /usr/bin/chromium or chromium on the PATH. Only
// when none exists is the test skipped.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AGENTPASS_TEST_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("AGENTPASS_TEST_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Skip("Chromium is not installed (apt-get install chromium, or set AGENTPASS_TEST_CHROMIUM)")
	return ""
}
