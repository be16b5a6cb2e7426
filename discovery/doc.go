// Package discovery finds AgentPass Services and Enterprise Authorities by
// DNS and fetches their configuration documents and key sets, with caches.
//
// # Overview
//
// A harness and an Authority find a Service through the TXT record
// _agentpass-service.{service_host}; a Service and a harness find the
// Enterprise Authority of a user through _agentpass.{user_email_domain}. The
// record names an HTTPS URL, from which the configuration document is
// fetched; the configuration names a JWKS. A [Client] does all of it for the
// three roles:
//
//   - TXT lookups with github.com/miekg/dns against configured nameservers
//     (default: /etc/resolv.conf), over UDP with a TCP retry on truncation,
//     trying each nameserver in turn. The character-strings of one record
//     are joined; names are lower-cased and converted to punycode.
//   - The spec's parsing rules (X-DNS-2, X-DNS-5, X-DNS-8, G-11): a value is
//     an absolute https:// URL (or "none", exactly, for enterprise records);
//     with several values exactly one must parse.
//   - Four outcomes told apart with errors.Is: a URL; [ErrDelegationDisabled]
//     ("none"); [ErrNoRecord] (NXDOMAIN or NODATA); and failures:
//     [ErrLookupFailed] (SERVFAIL, REFUSED, timeout, malformed or, with
//     Config.RequireDNSSEC, unauthenticated answers) and [ErrInvalidRecord].
//     Only ErrNoRecord may lead to another Authority; a failed lookup never
//     reads as "no record" (G-10).
//   - HTTPS fetches with the hygiene of G-27: TLS 1.2 or newer, verified
//     certificates, same-origin redirects only, a timeout, a bounded body,
//     application/json only, and no loopback, private or link-local
//     destinations unless Config.InsecureAllowPrivateNetworks. Documents are
//     decoded and validated with the pass package; a JWKS holding private key
//     material is rejected.
//   - Caches bounded in size and time: TXT answers by TTL, "no record" by the
//     SOA minimum (at most five minutes), documents by Cache-Control max-age
//     (at most one hour, G-28). Concurrent identical lookups and fetches are
//     collapsed into one. A failed refresh is never hidden by a stale value.
//   - [Client.LookupKey] refetches a JWKS for an unknown kid at most once per
//     Config.KeyRefetchCooldown.
//
// The package discovery/dnstest runs a real DNS server on loopback for
// tests.
//
// # Usage
//
// Create one Client per process and share it:
//
//	c, err := discovery.New(discovery.Config{Logger: logger})
//	...
//	auth, err := c.DiscoverEnterprise(ctx, "example.com")
//	switch {
//	case err == nil:
//		// auth.Configuration is the Enterprise Authority: it governs the user.
//	case errors.Is(err, discovery.ErrDelegationDisabled):
//		// The domain forbids agent delegation: reject.
//	case errors.Is(err, discovery.ErrNoRecord):
//		// No Enterprise Authority: Service or federated Authorities may be used.
//	default:
//		// Discovery failed: reject (502/503); never fall back.
//	}
//
// A Service or Authority verifying a signed assertion finds the signer's key
// with [Client.LookupKey], which satisfies dpop.KeyFetcher.
//
// Precedence of cache lifetimes, for documents:
//
//  1. "no-store" or "no-cache": Config.MinTTL;
//  2. "max-age=N", less the Age header;
//  3. otherwise Config.DefaultMaxAge;
//
// and the result is bounded to [Config.MinTTL, Config.MaxAge].
package discovery
