package devnetclient_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/examples/devnet/devnetclient"
)

// Load refuses what is not a devnet manifest, and a Client without a
// nameserver allows no private network (it is then an Internet client).
// The devnet's own tests use Load against a running devnet.
func TestLoadRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, path := range map[string]string{
		"missing":    filepath.Join(dir, "none.json"),
		"not JSON":   write("bad.json", "{"),
		"no DNS":     write("nodns.json", `{"ca_file":"x.pem"}`),
		"too large":  write("big.json", `{"x":"`+strings.Repeat("a", 1<<20)+`"}`),
		"no CA file": write("noca.json", `{"ca_file":"`+filepath.Join(dir, "absent.pem")+`","dns":"127.0.0.1:9"}`),
		"not a PEM":  write("nopem.json", `{"ca_file":"`+write("x.pem", "junk")+`","dns":"127.0.0.1:9"}`),
	} {
		if _, err := devnetclient.Load(path); err == nil || !strings.HasPrefix(err.Error(), "devnetclient: ") {
			t.Errorf("%s: %v, want a devnetclient error", name, err)
		}
	}
	c, err := devnetclient.New(devnetclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.InsecureAllowPrivateNetworks || c.Resolver != nil || c.HarnessConfig("x").InsecureAllowPrivateNetworks {
		t.Error("a client without a nameserver allows private networks")
	}
}
