package authority

import (
	"context"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/outbound/outboundtest"
	"github.com/agentpass-go/agentpass/pass"
)

// TestOutboundPolicy (G-27): available_scopes calls, and the default
// Discovery's fetches, follow the SDK's outbound policy (TLS 1.2 included,
// which the available_scopes client used to lack); no redirect is followed.
func TestOutboundPolicy(t *testing.T) {
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	outboundtest.Run(t, outboundtest.Role{
		New: func(o outboundtest.Options) (outboundtest.Built, error) {
			a, err := New(Config{
				Identifier: "https://authority.example.com", TrustMode: pass.TrustFederated, Keys: keys,
				HTTPClient: o.HTTPClient, WrapTransport: o.WrapTransport, InsecureAllowPrivateNetworks: o.AllowPrivate,
			})
			if err != nil {
				return outboundtest.Built{}, err
			}
			return outboundtest.Built{Client: a.client, Fetch: func(ctx context.Context, url string) error {
				_, err := a.disc.AuthorityConfiguration(ctx, url)
				return err
			}}, nil
		},
		Forbidden: ErrForbiddenAddress,
	})
}
