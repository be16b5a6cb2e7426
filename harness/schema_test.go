package harness

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentpass-go/agentpass/pass"
)

// specDir is the folder of the spec's schemas; the test skips when it is
// absent (set AGENTPASS_SPEC_DIR).
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

func validate(t *testing.T, body []byte, name, sub string) {
	t.Helper()
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
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("%s does not validate against %s %s: %v", body, name, sub, err)
	}
}

// H-ISS-2, H-RED-2, H-RED-3, H-RES-1: every body the Harness sends
// validates against the spec's schemas, for both flows.
func TestRequestsMatchSchemas(t *testing.T) {
	for _, typ := range []pass.PassType{pass.BearerToken, pass.BrowserSession} {
		t.Run(string(typ), func(t *testing.T) {
			f := newFake(t)
			f.status = func(w http.ResponseWriter, _ int, _ *http.Request) { writeJSON(w, 200, approved(typ)) }
			c, _ := f.client(Config{})
			req := bearerRequest()
			req.Type = typ
			if typ == pass.BrowserSession {
				req.Destination = svcOrigin + "/tickets"
			}
			ctx := context.Background()
			g, err := c.Acquire(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			endpoint, schemaName := "/redeem-bearer-token", "service-redeem-bearer-token.schema.json"
			if typ == pass.BrowserSession {
				endpoint, schemaName = "/redeem-browser-session", "service-redeem-browser-session.schema.json"
				_, err = c.RedeemBrowserSession(ctx, g, RedeemOptions{RequestedScope: pass.Scope{"tickets:read"}})
			} else {
				_, err = c.RedeemBearerToken(ctx, g, RedeemOptions{RequestedScope: pass.Scope{"tickets:read"}})
			}
			if err != nil {
				t.Fatal(err)
			}
			validate(t, f.callsTo(svcOrigin + "/resolve")[0].Body, "service-authority-resolution.schema.json", "request")
			validate(t, f.callsTo(authSvc + "/issue")[0].Body, "issuance-request.schema.json", "")
			validate(t, f.callsTo(svcOrigin + endpoint)[0].Body, schemaName, "request")
		})
	}
}
