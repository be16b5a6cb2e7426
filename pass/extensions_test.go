package pass_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/internal/spectest"
	"github.com/agentpass-go/agentpass/pass"
)

// X2 (mission.md §5.8): a broken extension is ignored, the others and the
// v0.1 document that carries them stay usable.
func TestExtensionsLenient(t *testing.T) {
	base := `{"version":"0.1","authority":"https://idp.example","trust_mode":"enterprise","jwks_uri":"https://idp.example/jwks",
		"endpoints":{"issuance":"https://idp.example/i","issuance_status":"https://idp.example/i/{id}","validate":"https://idp.example/v","authorization_check":"https://idp.example/c"},
		"extensions":%s}`
	cases := []struct {
		name, ext   string
		want        []string
		ignoredURIs []string
	}{
		{"a string", `"mission"`, nil, []string{""}},
		{"an array", `["https://agentpass-go.github.io/ext/mission"]`, nil, []string{""}},
		{"null", `null`, nil, nil},
		{"entry not an object", `{"https://agentpass-go.github.io/ext/mission":"1.0"}`, nil, []string{pass.ExtMission}},
		{"no version", `{"https://agentpass-go.github.io/ext/mission":{}}`, nil, []string{pass.ExtMission}},
		{"numeric version", `{"https://agentpass-go.github.io/ext/mission":{"version":1.0}}`, nil, []string{pass.ExtMission}},
		{"unknown major", `{"https://agentpass-go.github.io/ext/mission":{"version":"2.0"},"https://agentpass-go.github.io/ext/stages":{"version":"1.0"}}`,
			[]string{pass.ExtStages}, []string{pass.ExtMission}},
		{"http endpoint", `{"https://agentpass-go.github.io/ext/mission":{"version":"1.0","endpoints":{"mission":"http://idp.example/m"}}}`, nil, []string{pass.ExtMission}},
		{"relative endpoint", `{"https://agentpass-go.github.io/ext/mission":{"version":"1.0","endpoints":{"mission":"/m"}}}`, nil, []string{pass.ExtMission}},
		{"endpoints not strings", `{"https://agentpass-go.github.io/ext/mission":{"version":"1.0","endpoints":{"mission":3}}}`, nil, []string{pass.ExtMission}},
		{"higher minor, unknown members", `{"https://agentpass-go.github.io/ext/mission":{"version":"1.7","novel":{"x":1},"endpoints":{"mission":"https://idp.example/m"}}}`,
			[]string{pass.ExtMission}, nil},
		{"unknown URI kept for whoever knows it", `{"urn:example:other":{"version":"1.0"}}`, []string{"urn:example:other"}, nil},
		{"key not a URI", `{"mission":{"version":"1.0"}}`, nil, []string{"mission"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cfg pass.AuthorityConfiguration
			if err := pass.Decode([]byte(strings.Replace(base, "%s", c.ext, 1)), &cfg); err != nil {
				t.Fatalf("the v0.1 document failed because of its extensions: %v", err)
			}
			if diff := cmp.Diff(c.want, cfg.Extensions.URIs(), cmpEmpty); diff != "" {
				t.Errorf("extensions kept (-want +got):\n%s", diff)
			}
			var ignored []string
			for _, ig := range cfg.Extensions.Ignored() {
				if ig.Reason == "" {
					t.Errorf("ignored %q without a reason", ig.URI)
				}
				ignored = append(ignored, ig.URI)
			}
			if diff := cmp.Diff(c.ignoredURIs, ignored, cmpEmpty); diff != "" {
				t.Errorf("extensions ignored (-want +got):\n%s", diff)
			}
		})
	}
}

var cmpEmpty = cmp.Comparer(func(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return cmp.Equal([]string(a), []string(b))
})

// X1: documents carrying extensions still validate against the v0.1
// schemas, and the extension members round-trip.
func TestExtensionsRoundTripAndSchema(t *testing.T) {
	var x pass.Extensions
	e, err := pass.Extension{Version: "1.0", Endpoints: map[string]string{"delegate": "https://idp.example/d"}}.WithMember("max_depth", 3)
	if err != nil {
		t.Fatal(err)
	}
	if x, err = x.With(pass.ExtDelegation, e); err != nil {
		t.Fatal(err)
	}
	if x, err = x.With(pass.ExtHolderBinding, pass.Extension{Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.With(pass.ExtMission, pass.Extension{Version: "1.0", Endpoints: map[string]string{"mission": "http://idp.example/m"}}); err == nil {
		t.Error("With accepted an entry that parsing would drop")
	}
	cfg := validAuthorityConfig()
	cfg.Extensions = x
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var back pass.AuthorityConfiguration
	if err := pass.Decode(b, &back); err != nil {
		t.Fatal(err)
	}
	var depth int
	got, ok := back.Extensions.Get(pass.ExtDelegation)
	if !ok || !got.Member("max_depth", &depth) || depth != 3 || got.Endpoints["delegate"] != "https://idp.example/d" {
		t.Errorf("delegation extension after a round trip = %+v (max_depth %d), %v", got, depth, ok)
	}
	if !back.Extensions.Has(pass.ExtHolderBinding) || back.Extensions.Len() != 2 {
		t.Errorf("extensions after a round trip = %v", back.Extensions.URIs())
	}
	if back.Extensions.Endpoint(pass.ExtDelegation, "delegate") != "https://idp.example/d" {
		t.Error("Endpoint lookup failed")
	}
	// Without extensions the member is left out entirely.
	plain, _ := json.Marshal(validAuthorityConfig())
	if strings.Contains(string(plain), "extensions") {
		t.Errorf("a configuration without extensions encodes the member: %s", plain)
	}
}

// X1 against the schemas themselves.
func TestExtensionsValidateAgainstSchemas(t *testing.T) {
	spectest.Dir(t)
	x, err := (pass.Extensions{}).With(pass.ExtMission, pass.Extension{Version: "1.0", Endpoints: map[string]string{"mission": "https://a.example.com/m"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := validAuthorityConfig()
	cfg.Extensions = x
	validateAgainst(t, "authority-configuration.schema.json", "", cfg)
	svc := validServiceConfig()
	svc.Extensions = x
	validateAgainst(t, "service-configuration.schema.json", "", svc)
	req := &pass.IssuanceRequest{Type: pass.BearerToken, Service: pass.ServiceRef{Origin: "https://svc.example.com"}, User: pass.User{Email: "alex@example.com"},
		Harness: pass.HarnessInfo{ID: "h1", Extensions: pass.HarnessExtensions{pass.ExtHolderBinding, pass.ExtMission}},
		Task:    pass.Task{ID: "t1", Description: "do it"}}
	validateAgainst(t, "issuance-request.schema.json", "", req)
}

func TestHarnessExtensionsLenient(t *testing.T) {
	var h pass.HarnessInfo
	if err := json.Unmarshal([]byte(`{"id":"h","extensions":["https://agentpass-go.github.io/ext/holder-binding",3,"","nope","https://agentpass-go.github.io/ext/holder-binding",{"a":1}]}`), &h); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pass.HarnessExtensions{pass.ExtHolderBinding}, h.Extensions); diff != "" {
		t.Errorf("harness.extensions (-want +got):\n%s", diff)
	}
	if err := json.Unmarshal([]byte(`{"id":"h","extensions":"https://agentpass-go.github.io/ext/holder-binding"}`), &h); err != nil || h.Extensions.Has(pass.ExtHolderBinding) {
		t.Errorf("a string harness.extensions = %v, %v; want none and no error", h.Extensions, err)
	}
}

func FuzzExtensions(f *testing.F) {
	for _, s := range []string{`{}`, `"x"`, `{"https://agentpass-go.github.io/ext/mission":{"version":"1.0","endpoints":{"mission":"https://a.example/m"},"x":[1]}}`,
		`{"urn:a":{"version":"1.99"},"urn:b":{"version":"0.1"},"urn:c":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		x := pass.ParseExtensions(data)
		for _, uri := range x.URIs() {
			e, _ := x.Get(uri)
			if _, err := (pass.Extensions{}).With(uri, e); err != nil {
				t.Fatalf("parsing kept %q, which With refuses: %v", uri, err)
			}
		}
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatalf("parsed extensions do not encode: %v", err)
		}
		again := pass.ParseExtensions(b)
		if !cmp.Equal(x.URIs(), again.URIs(), cmpEmpty) || len(again.Ignored()) != 0 {
			t.Fatalf("re-parse changed the set: %v -> %v (ignored %v)", x.URIs(), again.URIs(), again.Ignored())
		}
	})
}
