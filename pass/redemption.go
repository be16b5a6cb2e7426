package pass

import "time"

// RedemptionRequest is the body of POST {service_redeem_browser_session_url}
// and POST {service_redeem_bearer_token_url} (§3.3.1, §3.4.1).
type RedemptionRequest struct {
	AgentPass      AgentPass     `json:"agentpass"`
	Authority      string        `json:"authority"`
	User           User          `json:"user"`
	HarnessProof   *JWTContainer `json:"harness_proof,omitempty"`
	RequestedScope Scope         `json:"requested_scope,omitempty"`
	// InitializationMethods is an extension: the browser-session
	// constructions the Harness supports ("POST", "GET"). A Service answers
	// with a form POST, which keeps the secret out of the URL, only to
	// Harnesses that list "POST"; plain v0.1 Harnesses omit it.
	InitializationMethods []string `json:"initialization_methods,omitempty"`
}

// Validate checks the request shape common to both endpoints, so a Service
// rejects a malformed redemption before it calls the Authority.
// Use [RedemptionRequest.ValidateFor] to also check the endpoint's type.
func (r *RedemptionRequest) Validate() error {
	if err := checkType("agentpass.type", r.AgentPass.Type); err != nil {
		return err
	}
	if r.AgentPass.Value == "" {
		return missing("agentpass.value")
	}
	if err := checkURL("authority", r.Authority); err != nil {
		return err
	}
	if err := checkEmail("user.email", r.User.Email); err != nil {
		return err
	}
	if r.HarnessProof != nil {
		if err := r.HarnessProof.validate("harness_proof"); err != nil {
			return err
		}
	}
	return r.RequestedScope.validate("requested_scope")
}

// ValidateFor checks the request and that agentpass.type is t, the type of
// the endpoint that received it.
func (r *RedemptionRequest) ValidateFor(t PassType) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.AgentPass.Type != t {
		return invalid("agentpass.type", "must be "+string(t)+" at this endpoint")
	}
	return nil
}

// BearerTokenResponse is a successful bearer-token redemption (§4.6). The
// token is a secret: never log it.
type BearerTokenResponse struct {
	BearerToken string `json:"bearer_token"`
	Scope       Scope  `json:"scope,omitempty"`
	ExpiresIn   *int64 `json:"expires_in,omitempty"`
	// TokenType is an extension: "DPoP" when the token is sender-constrained
	// (RFC 9449), absent or "Bearer" otherwise.
	TokenType string `json:"token_type,omitempty"`
}

// Validate checks that bearer_token is present and expires_in is not
// negative.
func (r *BearerTokenResponse) Validate() error {
	if r.BearerToken == "" {
		return missing("bearer_token")
	}
	if r.ExpiresIn != nil && *r.ExpiresIn < 0 {
		return invalid("expires_in", "must not be negative")
	}
	return r.Scope.validate("scope")
}

// BrowserSessionResponse is a successful browser-session redemption (§4.5).
// With InitializationRequest set (hardening draft), the one-time secret is in
// its form fields and the Harness must submit a form POST to
// InitializationURL; otherwise the Harness opens InitializationURL once.
type BrowserSessionResponse struct {
	InitializationURL     string                 `json:"initialization_url"`
	ExpiresAt             *time.Time             `json:"expires_at,omitempty"`
	OneTime               *bool                  `json:"one_time,omitempty"`
	InitializationRequest *InitializationRequest `json:"initialization_request,omitempty"`
}

// InitializationRequest tells the Harness how to submit the initialization.
type InitializationRequest struct {
	Method     string            `json:"method,omitempty"`
	FormFields map[string]string `json:"form_fields,omitempty"`
}

// Validate checks initialization_url and initialization_request.method.
func (r *BrowserSessionResponse) Validate() error {
	if err := checkURL("initialization_url", r.InitializationURL); err != nil {
		return err
	}
	if ir := r.InitializationRequest; ir != nil {
		if ir.Method != "" && ir.Method != "GET" && ir.Method != "POST" {
			return invalid("initialization_request.method", `must be "GET" or "POST"`)
		}
		if ir.Method == "POST" && len(ir.FormFields) == 0 {
			return missing("initialization_request.form_fields")
		}
	}
	return nil
}
