package harness

import (
	"context"
	"net/http"
	"testing"

	"github.com/agentpass-go/agentpass/internal/spectest"

	"github.com/agentpass-go/agentpass/pass"
)

// validate checks a body against the spec's schema (spectest).
func validate(t *testing.T, body []byte, name, sub string) {
	t.Helper()
	spectest.Validate(t, body, name, sub)
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
