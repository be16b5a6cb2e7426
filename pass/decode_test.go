package pass_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// FuzzDecodeFastPath: Decode takes one json.Unmarshal for a document that
// decodes at once (#19); on every input it must answer as the json.Decoder
// path does, with the same error and the same value, for the documents on
// the validation and redemption paths.
func FuzzDecodeFastPath(f *testing.F) {
	for _, dir := range []string{"FuzzValidationRequest", "FuzzValidationResponse", "FuzzRedemptionRequest"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				if s, ok := corpusBytes(string(b)); ok {
					f.Add(s)
				}
			}
		}
	}
	for _, s := range []string{
		`{"agentpass":{"value":"ap_8f3a"}}`, `{"agentpass":{"value":"ap_8f3a"}} {}`, `{"agentpass":{"value":""}}`,
		`{"agentpass":{"value":"a"}}}`, `{"agentpass":{"value":"a","value":"b"}}`, `{"agentpass":{"value":"a"},"agentpass":{"value":"b"}}`,
		`{"agentpass":{"value":"a\"}}`, `{"agentpass":{"value":"é"}}`, `{"agentpass":{"value":"a"}"}}`, `{"agentpass":{"value":1}}`,
		`{"request":{"agentpass":{"value":"v"}}}`, `{"agentpass":{"value":"v"},"x":[1,2}`, `{"scope":"a"}`,
		`{"authorization_id":"a","user":{"email":"a@example.com"},"agent":{"id":"x"},"scope":["a"],"type":"bearer_token","authorization_expires_at":"2026-01-01T00:00:00Z"}`,
		`{"agentpass":{"type":"bearer_token","value":"ap_x"},"authority":"https://a.example.com","user":{"email":"a@example.com"},"harness_proof":{"jwt":"a.b.c"},"requested_scope":["x","*"]}`,
		`{"agentpass":{"type":"bearer_token","value":"ap_x"},"extensions":{"x":{}},"authority":"https://a.example.com"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameDecode[pass.ValidationRequest](t, data)
		sameDecode[pass.ValidationResponse](t, data)
		sameDecode[pass.RedemptionRequest](t, data)
	})
}

func sameDecode[T any, P interface {
	*T
	pass.Document
}](t *testing.T, data []byte) {
	t.Helper()
	var fast, slow T
	errFast := pass.Decode(data, P(&fast))
	errSlow := pass.DecodeSlow(data, P(&slow))
	if fmt.Sprint(errFast) != fmt.Sprint(errSlow) {
		t.Fatalf("%T: Decode = %v; json.Decoder path: %v\n%q", fast, errFast, errSlow, data)
	}
	if errFast == nil && !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%T: Decode = %+v; json.Decoder path: %+v\n%q", fast, fast, slow, data)
	}
}

// corpusBytes reads the []byte value of a "go test fuzz v1" corpus file.
func corpusBytes(s string) ([]byte, bool) {
	_, v, ok := strings.Cut(s, "\n")
	if !ok {
		return nil, false
	}
	v = strings.TrimSpace(v)
	v, ok = strings.CutPrefix(v, "[]byte(")
	if !ok {
		return nil, false
	}
	v = strings.TrimSuffix(v, ")")
	var out string
	if _, err := fmt.Sscanf(v, "%q", &out); err != nil {
		return nil, false
	}
	return []byte(out), true
}

// FuzzJWKMembers: the cnf.jwk check reads member names without a map
// (#19); on every input it answers as the map path does.
func FuzzJWKMembers(f *testing.F) {
	for _, s := range []string{`{"kty":"EC","crv":"P-256","x":"a","y":"b"}`, `{"kty":"EC","d":"x"}`, `{"crv":"x"}`,
		`{"kty":"EC","k":"s","p":"q"}`, `{"\u006bty":"EC"}`, `{"kty":"EC","\u0064":"x"}`, `{ "kty" : [1,{"d":2}] , "oth" :null }`,
		`[]`, `{"kty":"EC"} x`, `{"kty":"EC",}`, `{}`, `{"kty":1,"kty":2}`, "{\"\xff\":1,\"kty\":\"a\\\"b\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || string(raw) == "null" {
			return
		}
		got := pass.ValidateCnf(&pass.Cnf{JWK: raw}, "cnf")
		want := pass.ValidateJWKSlow("cnf", raw)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cnf check of %q = %v; map path: %v", raw, got, want)
		}
	})
}

// TestDecodeValidationRequestAllocs (#19): the validation request in the
// form Services send decodes without reflection: the document (here on the
// heap, as the caller's is) and its value.
func TestDecodeValidationRequestAllocs(t *testing.T) {
	body := []byte(`{"agentpass":{"value":"ap_8f3a1b2c4d5e6f7a8b9c0d1e2f3a4b5c"}}`)
	n := testing.AllocsPerRun(100, func() {
		var r pass.ValidationRequest
		if err := pass.Decode(body, &r); err != nil || r.AgentPass.Value != "ap_8f3a1b2c4d5e6f7a8b9c0d1e2f3a4b5c" {
			t.Fatal(r, err)
		}
	})
	if n > 2 {
		t.Errorf("Decode(ValidationRequest): %v allocations, want at most 2", n)
	}
}
