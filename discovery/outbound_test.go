package discovery

import (
	"testing"

	"github.com/agentpass-go/agentpass/internal/outbound/outboundtest"
)

// TestOutboundPolicy (G-27, X-DNS-13, X-DNS-14): the fetching client
// follows the SDK's outbound policy, with up to 3 same-origin redirects.
func TestOutboundPolicy(t *testing.T) {
	outboundtest.Run(t, outboundtest.Role{
		New: func(o outboundtest.Options) (outboundtest.Built, error) {
			c, err := New(Config{
				Nameservers: []string{"127.0.0.1:53"}, HTTPClient: o.HTTPClient,
				WrapTransport: o.WrapTransport, InsecureAllowPrivateNetworks: o.AllowPrivate,
			})
			if err != nil {
				return outboundtest.Built{}, err
			}
			return outboundtest.Built{Client: c.http}, nil
		},
		Forbidden:           ErrForbiddenAddress,
		SameOriginRedirects: maxRedirects,
	})
}
