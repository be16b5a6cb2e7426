package pass

// ResolutionRequest is the body of POST {service_authority_resolution_url}
// (§4.2).
type ResolutionRequest struct {
	User User `json:"user"`
}

// User identifies the User of a delegation by e-mail address.
type User struct {
	Email string `json:"email"`
}

// Validate checks user.email.
func (r *ResolutionRequest) Validate() error { return checkEmail("user.email", r.User.Email) }

// ResolutionResponse is the answer of the authority-resolution endpoint. It
// carries exactly one of the three members, or (as the upstream follow-up
// draft allows) ServiceAuthority together with TrustedFederatedAuthorities
// when no Enterprise Authority exists.
type ResolutionResponse struct {
	EnterpriseAuthority         *AuthorityRef  `json:"enterprise_authority,omitempty"`
	ServiceAuthority            *AuthorityRef  `json:"service_authority,omitempty"`
	TrustedFederatedAuthorities []AuthorityRef `json:"trusted_federated_authorities,omitempty"`
}

// Validate checks the shape rule above and every entry: an answer naming
// several kinds of Authority would leave the Harness to pick one, and
// precedence is the Service's decision.
func (r *ResolutionResponse) Validate() error {
	e, s, f := r.EnterpriseAuthority != nil, r.ServiceAuthority != nil, r.TrustedFederatedAuthorities != nil
	switch {
	case e && (s || f):
		return invalid("enterprise_authority", "must be the only authority choice")
	case !e && !s && !f:
		return invalid("response", "must carry enterprise_authority, service_authority or trusted_federated_authorities")
	}
	if e {
		if err := r.EnterpriseAuthority.Validate(); err != nil {
			return prefixed("enterprise_authority", err)
		}
	}
	if s {
		if err := r.ServiceAuthority.Validate(); err != nil {
			return prefixed("service_authority", err)
		}
	}
	if f {
		if len(r.TrustedFederatedAuthorities) == 0 {
			return invalid("trusted_federated_authorities", "must not be empty when present")
		}
		for i := range r.TrustedFederatedAuthorities {
			if err := r.TrustedFederatedAuthorities[i].Validate(); err != nil {
				return prefixed("trusted_federated_authorities", err)
			}
		}
	}
	return nil
}

// AvailableScopesRequest is the body an Authority sends to a Service's
// available-scopes endpoint (§4.3).
type AvailableScopesRequest struct {
	User  User  `json:"user"`
	Agent Agent `json:"agent"`
	Task  *Task `json:"task,omitempty"`
}

// Agent identifies the agent, as vouched for by an Authority.
type Agent struct {
	ID string `json:"id"`
}

// Validate checks user.email and agent.id.
func (r *AvailableScopesRequest) Validate() error {
	if err := checkEmail("user.email", r.User.Email); err != nil {
		return err
	}
	if r.Agent.ID == "" {
		return missing("agent.id")
	}
	return nil
}

// AvailableScopesResponse is a Service's answer listing the scopes it offers.
type AvailableScopesResponse struct {
	Scopes []ScopeInfo `json:"scopes"`
}

// ScopeInfo describes one scope a Service offers.
type ScopeInfo struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Effect is an extension member (ExtCompile): what granting the scope
	// lets the holder do (read, write, delete, external or admin). An
	// Authority reads any other value as unknown, and never lets a
	// Service's effect lower its own classification.
	Effect string `json:"effect,omitempty"`
}

// Validate checks that scopes is present and every name is non-empty.
func (r *AvailableScopesResponse) Validate() error {
	if r.Scopes == nil {
		return missing("scopes")
	}
	for _, s := range r.Scopes {
		if s.Name == "" {
			return missing("scopes.name")
		}
	}
	return nil
}

// Names returns the scope names in order, as a Scope.
func (r *AvailableScopesResponse) Names() Scope {
	out := make(Scope, 0, len(r.Scopes))
	for _, s := range r.Scopes {
		out = append(out, s.Name)
	}
	return out.Dedupe()
}
