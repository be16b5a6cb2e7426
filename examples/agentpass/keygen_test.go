package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
)

// TestKeygen: keygen writes a key the roles load (dpop.LoadKeySet), mode
// 0600, prints its public JWK and the thumbprint the key set publishes as
// kid, and never overwrites a key.
func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ alg, kty, crv string }{{"ES256", "EC", "P-256"}, {"Ed25519", "OKP", "Ed25519"}} {
		t.Run(tt.alg, func(t *testing.T) {
			file := filepath.Join(dir, tt.alg+".pem")
			var stdout, stderr bytes.Buffer
			if code := run([]string{"-json", "keygen", "-alg", tt.alg, file}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			var out struct {
				File       string         `json:"file"`
				Thumbprint string         `json:"thumbprint"`
				JWK        map[string]any `json:"jwk"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
				t.Fatalf("%v: %s", err, stdout.String())
			}
			if out.JWK["kty"] != tt.kty || out.JWK["crv"] != tt.crv || out.JWK["d"] != nil || out.JWK["kid"] != out.Thumbprint {
				t.Errorf("jwk %v, thumbprint %s", out.JWK, out.Thumbprint)
			}
			fi, err := os.Stat(file)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
			}
			ks, err := dpop.LoadKeySet(file)
			if err != nil {
				t.Fatal(err)
			}
			if got := ks.Current().Thumbprint(); got != out.Thumbprint {
				t.Errorf("the loaded key's thumbprint %s, printed %s", got, out.Thumbprint)
			}
			before, _ := os.ReadFile(file)
			stderr.Reset()
			if code := run([]string{"keygen", file}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "never overwrites") {
				t.Errorf("second keygen: exit %d, %s", code, stderr.String())
			}
			if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
				t.Error("the key was overwritten")
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"keygen", "-alg", "RS256", filepath.Join(dir, "rsa.pem")}, &stdout, &stderr); code != 2 {
		t.Errorf("-alg RS256: exit %d, want 2", code)
	}
	if code := run([]string{"keygen"}, &stdout, &stderr); code != 2 {
		t.Errorf("no file: exit %d, want 2", code)
	}
}
