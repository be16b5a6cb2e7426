package discovery_test

import (
	"context"
	"errors"
	"testing"

	"github.com/agentpass-go/agentpass/discovery"
)

// A zero (or nil) Client never panics: every lookup fails with
// ErrInvalidConfig (#14 finding 8).
func TestZeroClient(t *testing.T) {
	ctx := context.Background()
	for _, c := range []*discovery.Client{new(discovery.Client), nil} {
		calls := map[string]func() error{
			"AuthorityConfiguration": func() error { _, err := c.AuthorityConfiguration(ctx, "https://idp.example/c"); return err },
			"ServiceConfiguration":   func() error { _, err := c.ServiceConfiguration(ctx, "https://svc.example/c"); return err },
			"DiscoverEnterprise":     func() error { _, err := c.DiscoverEnterprise(ctx, "corp.example"); return err },
			"DiscoverService":        func() error { _, err := c.DiscoverService(ctx, "https://svc.example"); return err },
			"JWKS":                   func() error { _, err := c.JWKS(ctx, "https://idp.example/jwks"); return err },
			"LookupKey":              func() error { _, err := c.LookupKey(ctx, "https://idp.example/jwks", "k1"); return err },
			"LookupEnterpriseTXT":    func() error { _, err := c.LookupEnterpriseTXT(ctx, "corp.example"); return err },
			"LookupServiceTXT":       func() error { _, err := c.LookupServiceTXT(ctx, "svc.example"); return err },
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, discovery.ErrInvalidConfig) {
				t.Errorf("%s on a %s Client = %v, want ErrInvalidConfig", name, map[bool]string{true: "nil", false: "zero"}[c == nil], err)
			}
		}
	}
}
