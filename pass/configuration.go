package pass

import (
	"strings"
)

// TrustMode is how an Authority is trusted (§5.1).
type TrustMode string

// Trust modes.
const (
	TrustEnterprise TrustMode = "enterprise"
	TrustFederated  TrustMode = "federated"
	TrustService    TrustMode = "service"
)

// Valid reports whether m is one of the three trust modes.
func (m TrustMode) Valid() bool {
	return m == TrustEnterprise || m == TrustFederated || m == TrustService
}

// AuthorityConfiguration is the document served at an Authority
// Configuration URL (§5.2).
type AuthorityConfiguration struct {
	Version   string             `json:"version"`
	Authority string             `json:"authority"`
	TrustMode TrustMode          `json:"trust_mode"`
	JWKSURI   string             `json:"jwks_uri"`
	Endpoints AuthorityEndpoints `json:"endpoints"`
	Policy    *AuthorityPolicy   `json:"policy,omitempty"`
	Approval  *ApprovalHints     `json:"approval,omitempty"`
	// Extensions lists the extensions the Authority implements (absent at
	// plain v0.1 Authorities; see [Extensions] for the lenient parsing).
	Extensions Extensions `json:"extensions,omitzero"`
}

// AuthorityEndpoints lists an Authority's endpoints. IssuanceStatus is a
// template containing "{id}". AuthorizationClose is the hardening draft's
// close endpoint; it is optional, and absent at plain v0.1 Authorities.
type AuthorityEndpoints struct {
	Issuance           string `json:"issuance"`
	IssuanceStatus     string `json:"issuance_status"`
	Validate           string `json:"validate"`
	AuthorizationCheck string `json:"authorization_check"`
	AuthorizationClose string `json:"authorization_close,omitempty"`
}

// AuthorityPolicy holds an Authority's published policy.
type AuthorityPolicy struct {
	// AllowServiceAuthorities is nil when absent, which means true.
	AllowServiceAuthorities *bool `json:"allow_service_authorities,omitempty"`
}

// ApprovalHints are an Authority's non-normative approval hints.
type ApprovalHints struct {
	Modes             []string `json:"modes,omitempty"`
	DefaultTTLSeconds int      `json:"default_ttl_seconds,omitempty"`
}

// AllowsServiceAuthorities reports the effective value of
// policy.allow_service_authorities (absent means true, §5.2).
func (c *AuthorityConfiguration) AllowsServiceAuthorities() bool {
	return c.Policy == nil || c.Policy.AllowServiceAuthorities == nil || *c.Policy.AllowServiceAuthorities
}

// StatusURL returns the issuance status URL for request id, filling the
// "{id}" template with the path-escaped id.
func (c *AuthorityConfiguration) StatusURL(id string) string {
	return strings.ReplaceAll(c.Endpoints.IssuanceStatus, "{id}", escapePathSegment(id))
}

// Validate checks the document against the authority-configuration schema
// and the version rule: a malformed version or an unknown major version is
// an error, since its rules may differ from the ones we implement.
func (c *AuthorityConfiguration) Validate() error {
	if c.Version == "" {
		return missing("version")
	}
	if err := CheckVersion(c.Version); err != nil {
		return &FieldError{Field: "version", Reason: err.Error(), Err: err}
	}
	if err := checkURL("authority", c.Authority); err != nil {
		return err
	}
	if c.TrustMode == "" {
		return missing("trust_mode")
	}
	if !c.TrustMode.Valid() {
		return invalid("trust_mode", `must be "enterprise", "federated" or "service"`)
	}
	if err := checkURL("jwks_uri", c.JWKSURI); err != nil {
		return err
	}
	e := c.Endpoints
	for _, f := range []struct{ name, v string }{
		{"endpoints.issuance", e.Issuance},
		{"endpoints.issuance_status", e.IssuanceStatus},
		{"endpoints.validate", e.Validate},
		{"endpoints.authorization_check", e.AuthorizationCheck},
	} {
		if err := checkURL(f.name, f.v); err != nil {
			return err
		}
	}
	if !strings.Contains(e.IssuanceStatus, "{id}") {
		return invalid("endpoints.issuance_status", `must contain the "{id}" template`)
	}
	if err := checkOptionalURL("endpoints.authorization_close", e.AuthorizationClose); err != nil {
		return err
	}
	if a := c.Approval; a != nil {
		seen := map[string]bool{}
		for _, m := range a.Modes {
			if m != "poll" {
				return invalid("approval.modes", `only "poll" is defined`)
			}
			if seen[m] {
				return invalid("approval.modes", "values must be unique")
			}
			seen[m] = true
		}
		if a.DefaultTTLSeconds < 0 {
			return invalid("approval.default_ttl_seconds", "must be at least 1")
		}
	}
	return nil
}

// ServiceConfiguration is the document served at a Service Configuration URL
// (§4.1).
type ServiceConfiguration struct {
	Version   string           `json:"version"`
	Kind      string           `json:"kind"`
	Service   ServiceInfo      `json:"service"`
	JWKSURI   string           `json:"jwks_uri"`
	Trust     ServiceTrust     `json:"trust"`
	Endpoints ServiceEndpoints `json:"endpoints"`
	// Extensions lists the extensions the Service implements (absent at
	// plain v0.1 Services; see [Extensions] for the lenient parsing).
	Extensions Extensions `json:"extensions,omitzero"`
}

// KindService is the only value of ServiceConfiguration.Kind.
const KindService = "service"

// ServiceInfo identifies a Service.
type ServiceInfo struct {
	Origin string `json:"origin"`
	Name   string `json:"name,omitempty"`
}

// ServiceTrust declares the Authorities a Service trusts besides Enterprise
// Authorities found by DNS.
type ServiceTrust struct {
	TrustedFederatedAuthorities []AuthorityRef `json:"trusted_federated_authorities,omitempty"`
	ServiceAuthority            *AuthorityRef  `json:"service_authority,omitempty"`
}

// AuthorityRef names an Authority and where its configuration is.
type AuthorityRef struct {
	Authority                 string `json:"authority"`
	AuthorityConfigurationURL string `json:"authority_configuration_url"`
}

// Validate checks both members are https:// URLs.
func (r *AuthorityRef) Validate() error {
	if err := checkURL("authority", r.Authority); err != nil {
		return err
	}
	return checkURL("authority_configuration_url", r.AuthorityConfigurationURL)
}

// ServiceEndpoints lists a Service's endpoints.
type ServiceEndpoints struct {
	ResolveAuthorities   string `json:"resolve_authorities"`
	RedeemBrowserSession string `json:"redeem_browser_session"`
	RedeemBearerToken    string `json:"redeem_bearer_token"`
	AvailableScopes      string `json:"available_scopes"`
}

// Validate checks the document against the service-configuration schema and
// the version rule of [AuthorityConfiguration.Validate].
func (c *ServiceConfiguration) Validate() error {
	if c.Version == "" {
		return missing("version")
	}
	if err := CheckVersion(c.Version); err != nil {
		return &FieldError{Field: "version", Reason: err.Error(), Err: err}
	}
	if c.Kind != KindService {
		return invalid("kind", `must be "service"`)
	}
	if err := checkOriginField("service.origin", c.Service.Origin); err != nil {
		return err
	}
	if err := checkURL("jwks_uri", c.JWKSURI); err != nil {
		return err
	}
	if c.Trust.TrustedFederatedAuthorities != nil {
		if len(c.Trust.TrustedFederatedAuthorities) == 0 {
			return invalid("trust.trusted_federated_authorities", "must not be empty when present")
		}
		seen := map[AuthorityRef]bool{}
		for i := range c.Trust.TrustedFederatedAuthorities {
			r := c.Trust.TrustedFederatedAuthorities[i]
			if err := r.Validate(); err != nil {
				return prefixed("trust.trusted_federated_authorities", err)
			}
			if seen[r] {
				return invalid("trust.trusted_federated_authorities", "entries must be distinct")
			}
			seen[r] = true
		}
	}
	if c.Trust.ServiceAuthority != nil {
		if err := c.Trust.ServiceAuthority.Validate(); err != nil {
			return prefixed("trust.service_authority", err)
		}
	}
	e := c.Endpoints
	for _, f := range []struct{ name, v string }{
		{"endpoints.resolve_authorities", e.ResolveAuthorities},
		{"endpoints.redeem_browser_session", e.RedeemBrowserSession},
		{"endpoints.redeem_bearer_token", e.RedeemBearerToken},
		{"endpoints.available_scopes", e.AvailableScopes},
	} {
		if err := checkURL(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

func escapePathSegment(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
