package harness_test

import (
	"context"
	"testing"

	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/pass"
)

// A zero Client never panics: each call fails with an error (#14 finding 8).
func TestZeroClient(t *testing.T) {
	ctx := context.Background()
	var c harness.Client
	if _, err := c.Resolve(ctx, "https://svc.example", "alex@corp.example"); err == nil {
		t.Error("Resolve on a zero Client succeeded")
	}
	if _, err := c.Acquire(ctx, harness.Request{Service: "https://svc.example", User: "alex@corp.example", Task: pass.Task{Description: "x"}}); err == nil {
		t.Error("Acquire on a zero Client succeeded")
	}
	if _, err := c.RedeemBearerToken(ctx, &harness.Grant{}, harness.RedeemOptions{}); err == nil {
		t.Error("RedeemBearerToken on a zero Client succeeded")
	}
	if _, err := c.RedeemBrowserSession(ctx, &harness.Grant{}, harness.RedeemOptions{}); err == nil {
		t.Error("RedeemBrowserSession on a zero Client succeeded")
	}
	if _, err := c.Start(ctx, harness.Request{Service: "https://svc.example", User: "alex@corp.example", Task: pass.Task{Description: "x"}}); err == nil {
		t.Error("Start on a zero Client succeeded")
	}
	if _, err := c.Wait(ctx, &harness.Pending{}); err == nil {
		t.Error("Wait on a zero Client succeeded")
	}
	if err := c.Cancel(ctx, &harness.Pending{}); err == nil {
		t.Error("Cancel on a zero Client succeeded")
	}
	var ts harness.TokenSource
	if _, err := ts.Token(ctx); err == nil {
		t.Error("Token of a zero TokenSource succeeded")
	}
	if err := ts.Close(); err != nil {
		t.Errorf("Close of a zero TokenSource: %v", err)
	}
}
