// Package spectest gives tests the spec's JSON Schemas. Only tests import
// it.
//
// # Overview
//
// [Validate] checks a document against a schema or one of its
// request/response sub-schemas; [Example] reads one of the spec's example
// documents; [Dir] finds the spec folder or skips the test.
//
// # Usage
//
//	spectest.Validate(t, body, "issuance-request.schema.json", "request")
//
// The folder is AGENTPASS_SPEC_DIR, or shared/spec beside the module's
// root (the workspace layout); tests that need it skip with a message
// naming the variable when it is absent, so a clone elsewhere still passes.
package spectest

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// EnvDir names the variable that points at the spec folder.
const EnvDir = "AGENTPASS_SPEC_DIR"

// Dir returns the spec folder (holding schemas/ and examples/), or skips
// the test.
func Dir(t testing.TB) string {
	t.Helper()
	dir, ok := find()
	if !ok {
		t.Skipf("spec folder not found at %q: set %s to the folder holding schemas/ and examples/", dir, EnvDir)
	}
	return dir
}

// Example returns the bytes of the spec example file name (for example
// "service-redeem-bearer-token.json"), for seeding fuzz targets; ok is false
// when the spec folder or the file is absent.
func Example(name string) (b []byte, ok bool) {
	dir, found := find()
	if !found {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(dir, "examples", name))
	return b, err == nil
}

func find() (string, bool) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		dir = defaultDir()
	}
	_, err := os.Stat(filepath.Join(dir, "schemas"))
	return dir, err == nil
}

// defaultDir is shared/spec beside the directory holding go.mod.
func defaultDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(d), "shared", "spec")
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

var cache sync.Map // "dir|name|sub" -> *jsonschema.Schema

// Schema compiles schemas/<name>, or its properties/<sub> when sub is set
// ("request", "response").
func Schema(t testing.TB, name, sub string) *jsonschema.Schema {
	t.Helper()
	dir := Dir(t)
	key := dir + "|" + name + "|" + sub
	if s, ok := cache.Load(key); ok {
		return s.(*jsonschema.Schema)
	}
	path, err := filepath.Abs(filepath.Join(dir, "schemas", name))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	loc := "file://" + filepath.ToSlash(path)
	if sub != "" {
		loc += "#/properties/" + sub
	}
	s, err := c.Compile(loc)
	if err != nil {
		t.Fatalf("spectest: compile %s: %v", loc, err)
	}
	cache.Store(key, s)
	return s
}

// Validate reports a test error unless body (JSON) validates against
// schemas/<name> (properties/<sub>). Without the spec folder it only logs:
// it is called in the middle of larger tests, which must go on.
func Validate(t testing.TB, body []byte, name, sub string) {
	t.Helper()
	if dir, ok := find(); !ok {
		t.Logf("spectest: spec folder not found at %q (set %s): %s not validated", dir, EnvDir, name)
		return
	}
	s := Schema(t, name, sub)
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(body)))
	if err != nil {
		t.Errorf("spectest: body is not JSON: %v: %s", err, body)
		return
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("spectest: %s does not validate against %s %s: %v", body, name, sub, err)
	}
}
