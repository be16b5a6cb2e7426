package spectest

import "testing"

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
