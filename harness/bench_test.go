package harness_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
)

type okTransport struct{}

func (okTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// BenchmarkTokenTransport is the per-request cost of adding the token (and,
// for DPoP, signing a fresh ES256 proof), without the network.
func BenchmarkTokenTransport(b *testing.B) {
	key, err := dpop.GenerateKey("ES256")
	if err != nil {
		b.Fatal(err)
	}
	for _, typ := range []string{"Bearer", "DPoP"} {
		b.Run(typ, func(b *testing.B) {
			tok, err := harness.NewToken("https://app.test", "tok_0123456789abcdef0123456789abcdef", typ, key, nil)
			if err != nil {
				b.Fatal(err)
			}
			rt := tok.Transport(okTransport{})
			req, _ := http.NewRequest(http.MethodGet, "https://app.test/api/tickets?state=open", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAcquireAndRedeem is one whole task over loopback TLS against a
// real Enterprise Authority (auto-approving) and Service: discovery (cached
// after the first), resolution, issuance, one poll, redemption.
func BenchmarkAcquireAndRedeem(b *testing.B) {
	e := e2e.New(b, e2e.Options{})
	c, err := harness.New(harness.Config{HarnessID: "bench", HTTPClient: e.Client, Discovery: e.NewDiscovery(), Now: e.Clock.Now, InsecureAllowPrivateNetworks: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		g, err := c.Acquire(ctx, task(e2e.EnterpriseUser))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
