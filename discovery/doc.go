// Package discovery finds AgentPass Services and Enterprise Authorities by
// DNS and fetches their configuration documents and key sets, with caches.
//
// # Overview
//
// Create one [Client] with [New] and share it. [Client.DiscoverService]
// finds a Service from its origin, [Client.DiscoverEnterprise] finds the
// Enterprise Authority of an e-mail domain, and [Client.LookupKey] finds a
// signer's key in its JWKS. Errors tell apart the outcomes a caller must
// treat differently, above all "no record" from "discovery failed".
//
// # Usage
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
//	svc, err := c.DiscoverService(ctx, "https://api.example.com")
//	key, err := c.LookupKey(ctx, svc.Configuration.JWKSURI, kid)
//
// [Client.LookupKey] satisfies dpop.KeyFetcher, so a Client can be given to
// a verifier as is. The package discovery/dnstest runs a real DNS server on
// loopback for tests.
//
// # How discovery works
//
// A Harness and an Authority find a Service through the TXT record
// _agentpass-service.{service_host}; a Service and a Harness find the
// Enterprise Authority of a user through _agentpass.{user_email_domain}. The
// record names an HTTPS URL, from which the configuration document is
// fetched; the configuration names a JWKS.
//
//   - TXT lookups use github.com/miekg/dns against configured nameservers
//     (default: /etc/resolv.conf), over UDP with a TCP retry on truncation,
//     trying each nameserver in turn. The character-strings of one record
//     are joined; names are lower-cased and converted to punycode.
//   - A value is an absolute https:// URL (or "none", exactly, for
//     enterprise records); with several values exactly one must parse, so
//     a stray or conflicting record is never guessed at.
//   - Four outcomes are told apart with errors.Is: a URL;
//     [ErrDelegationDisabled] ("none"); [ErrNoRecord] (NXDOMAIN or NODATA);
//     and failures: [ErrLookupFailed] (SERVFAIL, REFUSED, timeout,
//     malformed or, with Config.RequireDNSSEC, unauthenticated answers) and
//     [ErrInvalidRecord]. Only ErrNoRecord may lead to another Authority: an
//     attacker who can make a lookup fail must not be able to choose who
//     approves a user's agents.
//   - HTTPS fetches are fenced, because any domain's owner chooses the URLs
//     fetched: TLS 1.2 or newer, verified certificates, same-origin
//     redirects only, a timeout, a bounded body, application/json only, and
//     no loopback, private or link-local destinations unless
//     Config.InsecureAllowPrivateNetworks. Documents are decoded and
//     validated with the pass package; a JWKS holding private key material
//     is rejected.
//   - Caches are bounded in size and time: TXT answers by TTL, "no record"
//     by the SOA minimum (at most five minutes), documents by Cache-Control
//     max-age (at most one hour), so a domain's change of Authority takes
//     effect within the hour. Concurrent identical lookups and fetches are
//     collapsed into one. A failed refresh is never hidden by a stale value.
//   - [Client.LookupKey] refetches a JWKS for an unknown kid at most once
//     per Config.KeyRefetchCooldown, so tokens with made-up kids cannot turn
//     into a flood of fetches.
//
// Precedence of cache lifetimes, for documents:
//
//  1. "no-store" or "no-cache": Config.MinTTL;
//  2. "max-age=N", less the Age header;
//  3. otherwise Config.DefaultMaxAge;
//
// and the result is bounded to [Config.MinTTL, Config.MaxAge].
package discovery
