package harness_test

import (
	"context"
	"testing"

	"github.com/agentpass-go/agentpass/harness"
)

// A zero Client never panics: each call fails with an error (#14 finding 8).
func TestZeroClient(t *testing.T) {
	ctx := context.Background()
	var c harness.Client
	if _, err := c.Resolve(ctx, "https://svc.example", "alex@corp.example"); err == nil {
		t.Error("Resolve on a zero Client succeeded")
	}
	if _, err := c.Acquire(ctx, harness.Request{Service: "https://svc.example", User: "alex@corp.example", Task: harness.Task{Description: "x"}}); err == nil {
		t.Error("Acquire on a zero Client succeeded")
	}
	if _, err := c.RedeemBearerToken(ctx, &harness.Grant{}, harness.RedeemOptions{}); err == nil {
		t.Error("RedeemBearerToken on a zero Client succeeded")
	}
	if _, err := c.RedeemBrowserSession(ctx, &harness.Grant{}, harness.RedeemOptions{}); err == nil {
		t.Error("RedeemBrowserSession on a zero Client succeeded")
	}
}
