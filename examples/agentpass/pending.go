package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"github.com/agentpass-go/agentpass/harness"
)

// pendingFile is what token saves while a person decides and wait reads
// back: the harness's Pending and the scope still to ask at redemption.
type pendingFile struct {
	Pending *harness.Pending `json:"pending"`
	Scope   string           `json:"scope,omitempty"`
}

// maxPendingFile bounds what wait reads.
const maxPendingFile = 64 << 10

// defaultPendingPath is where token saves the pending request without
// -pending: agentpass/pending.json in the user's cache directory, or
// agentpass-pending.json in the current directory when there is none.
func defaultPendingPath(getenv func(string) string) string {
	if dir := userCacheDir(getenv); dir != "" {
		return filepath.Join(dir, "agentpass", "pending.json")
	}
	return "agentpass-pending.json"
}

// userCacheDir is os.UserCacheDir read through getenv, so that tests can
// point it elsewhere; "" when the platform's variable is not set.
func userCacheDir(getenv func(string) string) string {
	switch runtime.GOOS {
	case "windows":
		return getenv("LocalAppData")
	case "darwin", "ios":
		if h := getenv("HOME"); h != "" {
			return filepath.Join(h, "Library", "Caches")
		}
		return ""
	}
	if d := getenv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
		return d
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache")
	}
	return ""
}

// keyStore is the FileKeyStore next to the pending file: the holder key
// must outlive this process for wait to prove possession of it.
func keyStore(pendingPath string) (*harness.FileKeyStore, error) {
	return harness.NewFileKeyStore(filepath.Join(filepath.Dir(pendingPath), "agentpass-keys"))
}

// writePending saves f at path (0600, in a directory created 0700),
// atomically, so an interrupted write never leaves half a file for wait.
func writePending(path string, f pendingFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".pending-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readPending reads a file written by writePending.
func readPending(path string) (pendingFile, error) {
	var f pendingFile
	fh, err := os.Open(path)
	if err != nil {
		return f, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxPendingFile+1))
	if err != nil {
		return f, err
	}
	if len(b) > maxPendingFile {
		return f, fmt.Errorf("%s is not a pending request (larger than %d bytes)", path, maxPendingFile)
	}
	if err := json.Unmarshal(b, &f); err != nil || f.Pending == nil {
		return f, fmt.Errorf("%s is not a pending request saved by agentpass token", path)
	}
	return f, nil
}

// waitAndRedeem waits for the decision on a saved request and redeems the
// pass. The file goes once the request is decided either way; if ctx ends
// first, it stays for `agentpass wait`.
func (c *cli) waitAndRedeem(ctx, waitCtx context.Context, h *harness.Client, path string, f pendingFile) error {
	g, err := h.Wait(waitCtx, f.Pending)
	if err != nil {
		if waitCtx.Err() != nil {
			return c.interrupted(path, err)
		}
		if errors.Is(err, harness.ErrDenied) || errors.Is(err, harness.ErrExpired) || errors.Is(err, harness.ErrCanceled) {
			_ = os.Remove(path) // decided: nothing left to resume
		}
		return explain(err)
	}
	_ = os.Remove(path)
	tok, err := h.RedeemBearerToken(ctx, g, harness.RedeemOptions{RequestedScope: splitScopes(f.Scope)})
	if err != nil {
		return err
	}
	c.printToken(g, tok)
	return nil
}

// interrupted reports a wait that ended before the decision: the request
// stays open at the Authority and the file resumes it.
func (c *cli) interrupted(path string, err error) error {
	hint := fmt.Sprintf("still pending; resume with: agentpass wait %s", path)
	if c.json {
		c.printJSON(map[string]any{"error": map[string]any{"message": err.Error(), "code": "interrupted", "pending_file": path}})
	}
	c.mu.Lock()
	fmt.Fprintf(c.stderr, "agentpass: %v\n%s\n", err, hint)
	c.mu.Unlock()
	return errReported
}

// version is the module version this binary was built from: a tag when
// installed with go install ...@version, "(devel)" from a checkout.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "agentpass (unknown version)"
	}
	path, v := bi.Main.Path, bi.Main.Version
	if path == "" {
		path = "github.com/agentpass-go/agentpass"
	}
	if v == "" {
		v = "(devel)"
	}
	out := fmt.Sprintf("agentpass %s %s", path, v)
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			out += " " + s.Value[:12]
		}
	}
	return out + " " + bi.GoVersion
}
