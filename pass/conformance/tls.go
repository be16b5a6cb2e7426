package conformance

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"time"
)

// tlsCheck offers a target only TLS 1.0 and 1.1, which it must refuse.
func (r *runner) tlsCheck(role string, target func() string) def {
	return def{role: role, group: "transport", id: "X-DNS-13", level: Required,
		name:     "TLS older than 1.2 is refused",
		expected: "§5.2.1: every HTTPS endpoint of the protocol uses TLS 1.2 or newer.",
		fn: func(ctx context.Context, c *check) {
			u := target()
			if u == "" {
				c.skipf("no %s target", role)
				return
			}
			var base *http.Transport
			switch t := r.cfgTransport().(type) {
			case nil:
				base = http.DefaultTransport.(*http.Transport).Clone()
				base.Proxy = nil
			case *http.Transport:
				base = t.Clone()
			default:
				c.skipf("the configured HTTP client's transport cannot be given old TLS versions")
				return
			}
			tc := base.TLSClientConfig.Clone()
			if tc == nil {
				tc = &tls.Config{}
			}
			tc.MinVersion, tc.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			base.TLSClientConfig = tc
			base.ForceAttemptHTTP2 = false
			client := &http.Client{Transport: base, Timeout: 10 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			defer client.CloseIdleConnections()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				c.failf("%v", err)
				return
			}
			resp, err := client.Do(req)
			x := Exchange{Method: "GET (TLS 1.0–1.1 only)", URL: u}
			if err != nil {
				x.Error = err.Error()
				c.res.Exchanges = append(c.res.Exchanges, x)
				if !strings.Contains(strings.ToLower(err.Error()), "tls") && !strings.Contains(err.Error(), "version") {
					c.skipf("the connection failed for another reason: %v", err)
				}
				return
			}
			resp.Body.Close()
			x.Status = resp.StatusCode
			c.res.Exchanges = append(c.res.Exchanges, x)
			c.failf("a TLS 1.1 handshake succeeded (HTTP %d)", resp.StatusCode)
		}}
}

func (r *runner) cfgTransport() http.RoundTripper {
	if r.cfg.HTTPClient == nil {
		return nil
	}
	return r.cfg.HTTPClient.Transport
}
