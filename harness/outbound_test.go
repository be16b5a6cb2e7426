package harness

import (
	"context"
	"testing"

	"github.com/agentpass-go/agentpass/internal/outbound/outboundtest"
)

// TestOutboundPolicy (G-27, H-RED): calls to Services and Authorities, and
// the default Discovery's fetches, follow the SDK's outbound policy; no
// redirect is followed (a redemption carries a pass).
func TestOutboundPolicy(t *testing.T) {
	outboundtest.Run(t, outboundtest.Role{
		New: func(o outboundtest.Options) (outboundtest.Built, error) {
			c, err := New(Config{
				HarnessID: "outbound-test", HTTPClient: o.HTTPClient,
				WrapTransport: o.WrapTransport, InsecureAllowPrivateNetworks: o.AllowPrivate,
			})
			if err != nil {
				return outboundtest.Built{}, err
			}
			return outboundtest.Built{Client: c.http, Fetch: func(ctx context.Context, url string) error {
				_, err := c.disc.AuthorityConfiguration(ctx, url)
				return err
			}}, nil
		},
		Forbidden: ErrForbiddenAddress,
	})
}
