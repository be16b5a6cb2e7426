package discovery

import (
	"context"
	"fmt"

	"github.com/agentpass-go/agentpass/pass"
)

// Discovered is a discovered Service or Authority: its configuration and
// the URL the TXT record pointed to.
type Discovered[C pass.ServiceConfiguration | pass.AuthorityConfiguration] struct {
	ConfigurationURL string
	Configuration    *C
}

// DiscoverService finds the Service at origin (an https:// origin such as a
// Service assertion's iss): the TXT record _agentpass-service.{host}, then
// the configuration it points to, whose service.origin must equal origin
// after ASCII serialisation; otherwise the error is a [*MismatchError]. The
// check stops a record for one host from vouching for another origin.
func (c *Client) DiscoverService(ctx context.Context, origin string) (*Discovered[pass.ServiceConfiguration], error) {
	if err := pass.CheckOrigin(origin); err != nil {
		return nil, fmt.Errorf("%w: origin: %w", ErrInvalidName, err)
	}
	want, err := pass.Origin(origin)
	if err != nil {
		return nil, fmt.Errorf("%w: origin: %w", ErrInvalidName, err)
	}
	host, err := pass.Host(origin)
	if err != nil {
		return nil, fmt.Errorf("%w: origin: %w", ErrInvalidName, err)
	}
	u, err := c.LookupServiceTXT(ctx, host)
	if err != nil {
		return nil, err
	}
	shared, err := c.serviceConfiguration(ctx, u)
	if err != nil {
		return nil, err
	}
	got, _ := pass.Origin(shared.Service.Origin) // validated by Decode
	if got != want {
		return nil, &MismatchError{URL: u, Field: "service.origin", Got: shared.Service.Origin, Want: want}
	}
	return discovered(u, shared, copyServiceConfiguration), nil
}

// discovered returns the answer for the configuration at u, holding the
// caller's copy of the cached one, both in one allocation: a warm discovery
// runs on every assertion an Authority verifies.
func discovered[T pass.ServiceConfiguration | pass.AuthorityConfiguration](u string, shared *T, copyTo func(dst, src *T)) *Discovered[T] {
	out := new(struct {
		d   Discovered[T]
		cfg T
	})
	copyTo(&out.cfg, shared)
	out.d = Discovered[T]{ConfigurationURL: u, Configuration: &out.cfg}
	return &out.d
}

// DiscoverEnterprise finds the Enterprise Authority of an e-mail domain: the
// TXT record _agentpass.{domain}, then the Authority configuration it points
// to, whose trust_mode must be "enterprise", so a Service or federated
// Authority's configuration cannot pose as a domain's own; otherwise the
// error is a [*MismatchError]. A "none" record gives [ErrDelegationDisabled]
// and no record [ErrNoRecord]; every other error (a failed lookup, an
// unusable record) is a discovery failure that must not fall back to other
// Authorities: an attacker who can break a lookup must not pick the
// Authority.
func (c *Client) DiscoverEnterprise(ctx context.Context, emailDomain string) (*Discovered[pass.AuthorityConfiguration], error) {
	u, err := c.LookupEnterpriseTXT(ctx, emailDomain)
	if err != nil {
		return nil, err
	}
	shared, err := c.authorityConfiguration(ctx, u)
	if err != nil {
		return nil, err
	}
	if shared.TrustMode != pass.TrustEnterprise {
		return nil, &MismatchError{URL: u, Field: "trust_mode", Got: string(shared.TrustMode), Want: string(pass.TrustEnterprise)}
	}
	return discovered(u, shared, copyAuthorityConfiguration), nil
}
