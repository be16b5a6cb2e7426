package testnet

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium returns the Chromium executable for browser tests:
// $AGENTPASS_TEST_CHROMIUM when set (the test fails if it does not exist:
// CI sets it after installing Chromium, and a missing browser there is a
// failure, not a skip), else chromium, chromium-browser or google-chrome
// on the PATH, else /usr/bin/chromium. Only when none exists is the test
// skipped, with one line saying how to enable it.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AGENTPASS_TEST_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("AGENTPASS_TEST_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Skip("browser tests skipped: no Chromium on PATH; install it (apt-get install chromium) or set AGENTPASS_TEST_CHROMIUM=/path/to/chromium")
	return ""
}
