package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The devnet keeps its CA in -dir across restarts: the key is private to
// its owner, and name constraints limit the CA to .test.
func TestCAKeptAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	startStop := func() []byte {
		t.Helper()
		d, err := start(context.Background(), config{dir: dir, dnsAddr: "127.0.0.1:0"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	first := startStop()
	if second := startStop(); string(first) != string(second) {
		t.Error("a restart made a new CA")
	}
	fi, err := os.Stat(filepath.Join(dir, "ca-key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem: %v, %v; want mode 0600", fi, err)
	}
	b, _ := pem.Decode(first)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.PermittedDNSDomainsCritical || !slices.Equal(cert.PermittedDNSDomains, []string{"test"}) {
		t.Errorf("name constraints: critical %v, permitted %v; want [test]", cert.PermittedDNSDomainsCritical, cert.PermittedDNSDomains)
	}

	// A key others can read is refused, not used.
	if err := os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := start(context.Background(), config{dir: dir, dnsAddr: "127.0.0.1:0"}, io.Discard); err == nil {
		t.Error("a world-readable CA key was accepted")
	}
}
