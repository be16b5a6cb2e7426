package service

import (
	"context"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/outbound/outboundtest"
	"github.com/agentpass-go/agentpass/pass"
)

// TestOutboundPolicy (G-27): calls to Authorities, and the default
// Discovery's fetches, follow the SDK's outbound policy; no redirect is
// followed (a validation request carries a pass).
func TestOutboundPolicy(t *testing.T) {
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	outboundtest.Run(t, outboundtest.Role{
		New: func(o outboundtest.Options) (outboundtest.Built, error) {
			s, err := New(Config{
				Origin: "https://app.example.com", Keys: keys, Scopes: []pass.ScopeInfo{{Name: "tickets:read"}},
				HTTPClient: o.HTTPClient, WrapTransport: o.WrapTransport, InsecureAllowPrivateNetworks: o.AllowPrivate,
			})
			if err != nil {
				return outboundtest.Built{}, err
			}
			return outboundtest.Built{Client: s.cfg.HTTPClient, Fetch: func(ctx context.Context, url string) error {
				_, err := s.cfg.Discovery.AuthorityConfiguration(ctx, url)
				return err
			}}, nil
		},
		Forbidden: ErrForbiddenAddress,
	})
}
