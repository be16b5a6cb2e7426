package harness_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/harness"
)

func TestFileKeyStore(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "keys")
	ks, err := harness.NewFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v, %v; want 0700", fi, err)
	}
	for _, alg := range []string{"ES256", "EdDSA"} {
		k, err := dpop.GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := ks.Save(ctx, k)
		if err != nil {
			t.Fatalf("Save %s: %v", alg, err)
		}
		fi, err := os.Stat(filepath.Join(dir, ref+".key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s key file: %v, %v; want 0600", alg, fi, err)
		}
		got, err := ks.Load(ctx, ref)
		if err != nil || !dpop.SameKey(got.PublicJSON(), k.PublicJSON()) || got.Algorithm() != k.Algorithm() {
			t.Fatalf("Load %s: %v, %v", alg, got, err)
		}
		if err := ks.Delete(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Load(ctx, ref); !errors.Is(err, harness.ErrKeyNotFound) {
			t.Errorf("Load after Delete: %v, want ErrKeyNotFound", err)
		}
	}

	// References read from a file never name a path elsewhere.
	for _, ref := range []string{"", "../keys", "a/b", "..", "x.key"} {
		if _, err := ks.Load(ctx, ref); !errors.Is(err, harness.ErrKeyNotFound) {
			t.Errorf("Load(%q): %v, want ErrKeyNotFound", ref, err)
		}
	}
	// A file holding another key, or garbage, is refused.
	a, _ := dpop.GenerateKey("")
	b, _ := dpop.GenerateKey("")
	refA, err := ks.Save(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	refB, err := ks.Save(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, refB+".key"), filepath.Join(dir, refA+".key")); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Load(ctx, refA); err == nil {
		t.Error("a file holding another key was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, refA+".key"), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Load(ctx, refA); err == nil {
		t.Error("a garbage key file was accepted")
	}

	// A directory others can read is refused.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.NewFileKeyStore(open); err == nil {
		t.Error("a 0755 key directory was accepted")
	}
	if _, err := harness.NewFileKeyStore(""); err == nil {
		t.Error("an empty directory name was accepted")
	}
}

// A Pending that does not come from Start (or was edited) is refused
// before anything is sent, and never panics.
func TestWaitRejectsInvalidPending(t *testing.T) {
	c, err := harness.New(harness.Config{HarnessID: "h"})
	if err != nil {
		t.Fatal(err)
	}
	valid := harness.Pending{HarnessID: "h", Service: "https://app.test", User: "a@corp.test", TaskID: "t", TaskDescription: "d",
		Authority: "https://idp.test", AuthorityConfigurationURL: "https://idp.test/config", Branch: harness.BranchEnterprise,
		RequestID: "req_1", KeyRef: "abc"}
	for _, tt := range []struct {
		name string
		mod  func(*harness.Pending)
	}{
		{"other harness", func(p *harness.Pending) { p.HarnessID = "other" }},
		{"no request id", func(p *harness.Pending) { p.RequestID = "" }},
		{"no key", func(p *harness.Pending) { p.KeyRef = "" }},
		{"no task id", func(p *harness.Pending) { p.TaskID = "" }},
		{"http config", func(p *harness.Pending) { p.AuthorityConfigurationURL = "http://idp.test/config" }},
		{"http service", func(p *harness.Pending) { p.Service = "http://app.test" }},
		{"bad user", func(p *harness.Pending) { p.User = "nobody" }},
		{"bad type", func(p *harness.Pending) { p.Type = "coupon" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := valid
			tt.mod(&p)
			if _, err := c.Wait(context.Background(), &p); !errors.Is(err, harness.ErrInvalidRequest) {
				t.Errorf("Wait: %v, want ErrInvalidRequest", err)
			}
		})
	}
	if _, err := c.Wait(context.Background(), nil); !errors.Is(err, harness.ErrInvalidRequest) {
		t.Errorf("Wait(nil): %v", err)
	}
	// A valid-looking Pending whose key this Client never held.
	p := valid
	if _, err := c.Wait(context.Background(), &p); !errors.Is(err, harness.ErrKeyNotFound) {
		t.Errorf("Wait with an unknown key: %v, want ErrKeyNotFound", err)
	}
}
