package spectest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestValidate(t *testing.T) {
	Validate(t, []byte(`{"error":{"code":"x","message":"y"}}`), "error-response.schema.json", "")
	s := Schema(t, "error-response.schema.json", "")
	if s != Schema(t, "error-response.schema.json", "") {
		t.Error("schema not cached")
	}
	v := map[string]any{"error": map[string]any{"message": "no code"}}
	if err := s.Validate(v); err == nil {
		t.Error("an invalid error body validated")
	}
}

// Fuzz seeds come from AGENTPASS_SPEC_DIR like the schema tests (#14 item 12).
func TestExampleHonoursSpecDir(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"schemas", "examples"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "examples", "seed.json"), []byte(`{"seed":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvDir, dir)
	b, ok := Example("seed.json")
	if !ok || string(b) != `{"seed":1}` {
		t.Fatalf("Example = %q, %v; want the file under %s", b, ok, dir)
	}
	if _, ok := Example("absent.json"); ok {
		t.Fatal("Example found an absent file")
	}
}
