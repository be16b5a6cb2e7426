package service_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// specDir is the folder of the spec's schemas; tests that need it skip
// when it is absent (set AGENTPASS_SPEC_DIR).
func specDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("AGENTPASS_SPEC_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "spec")
	}
	if _, err := os.Stat(filepath.Join(dir, "schemas")); err != nil {
		t.Skipf("spec folder not found at %s: set AGENTPASS_SPEC_DIR", dir)
	}
	return dir
}

var schemaCache sync.Map

// schema compiles schemas/<name>, optionally its properties/<sub>.
func schema(t *testing.T, name, sub string) *jsonschema.Schema {
	t.Helper()
	key := name + "#" + sub
	if s, ok := schemaCache.Load(key); ok {
		return s.(*jsonschema.Schema)
	}
	path, err := filepath.Abs(filepath.Join(specDir(t), "schemas", name))
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
		t.Fatalf("compile %s: %v", loc, err)
	}
	schemaCache.Store(key, s)
	return s
}

// validJSON checks a body against schemas/<name> (properties/<sub>).
func validJSON(t *testing.T, body []byte, name, sub string) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, body)
	}
	if err := schema(t, name, sub).Validate(v); err != nil {
		t.Errorf("%s does not validate against %s %s: %v", body, name, sub, err)
	}
}

// validError checks an error body (X-ERR-1, X-ERR-2).
func validError(t *testing.T, r *response) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	validJSON(t, r.body, "error-response.schema.json", "")
}
