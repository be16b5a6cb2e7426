package pass

import "time"

// ValidationRequest is the body of POST {agentpass_validate_url} (§5.4.1).
type ValidationRequest struct {
	AgentPass PassValue `json:"agentpass"`
}

// PassValue carries only a pass value. The value is a secret: never log it.
type PassValue struct {
	Value string `json:"value"`
}

// Validate checks that agentpass.value is present.
func (r *ValidationRequest) Validate() error {
	if r.AgentPass.Value == "" {
		return missing("agentpass.value")
	}
	return nil
}

// ValidationResponse is an Authority's answer to a successful validation: the
// delegation details (§5.4.1).
type ValidationResponse struct {
	AuthorizationID string   `json:"authorization_id"`
	User            User     `json:"user"`
	Agent           Agent    `json:"agent"`
	Scope           Scope    `json:"scope"`
	Type            PassType `json:"type"`
	DestinationURL  string   `json:"destination_url,omitempty"`
	Cnf             *Cnf     `json:"cnf,omitempty"`
	Task            *Task    `json:"task,omitempty"`
	// AuthorizationExpiresAt is the delegation's absolute end (hardening
	// draft), past which a Service must keep no token or session; nil from
	// a plain v0.1 Authority.
	AuthorizationExpiresAt *time.Time `json:"authorization_expires_at,omitempty"`
	// Harness is an extension: the harness.id of the issuance request, which
	// a Service compares with the proof's iss when present, since v0.1 gives
	// it nothing to check iss against.
	Harness *HarnessRef `json:"harness,omitempty"`
	// Mission is an extension (ExtMission): the pass's mission.
	Mission *MissionInfo `json:"mission,omitempty"`
}

// HarnessRef names a Harness by its self-declared id.
type HarnessRef struct {
	ID string `json:"id"`
	// Extensions echoes harness.extensions of the issuance request, so the
	// Service knows which hardening the Harness opted into: with
	// ExtHolderBinding the pass is redeemable only with a hardened proof.
	Extensions HarnessExtensions `json:"extensions,omitempty"`
}

// Validate checks the response against the authority-validate schema.
func (r *ValidationResponse) Validate() error {
	if r.AuthorizationID == "" {
		return missing("authorization_id")
	}
	if err := checkEmail("user.email", r.User.Email); err != nil {
		return err
	}
	if r.Agent.ID == "" {
		return missing("agent.id")
	}
	if r.Scope == nil {
		return missing("scope")
	}
	if err := r.Scope.validate("scope"); err != nil {
		return err
	}
	if err := checkType("type", r.Type); err != nil {
		return err
	}
	if err := checkOptionalURL("destination_url", r.DestinationURL); err != nil {
		return err
	}
	if r.Cnf != nil {
		if err := r.Cnf.validate("cnf"); err != nil {
			return err
		}
	}
	return checkMission(r.Mission)
}

// AuthorizationCheckRequest is the body of POST
// {agentpass_authorization_check_url} (§5.5.1).
type AuthorizationCheckRequest struct {
	AuthorizationID string `json:"authorization_id"`
}

// Validate checks that authorization_id is present.
func (r *AuthorizationCheckRequest) Validate() error {
	if r.AuthorizationID == "" {
		return missing("authorization_id")
	}
	return nil
}

// AuthorizationCheckResponse is the answer for an active delegation.
type AuthorizationCheckResponse struct {
	Scope Scope `json:"scope"`
	// AuthorizationExpiresAt: see ValidationResponse.
	AuthorizationExpiresAt *time.Time `json:"authorization_expires_at,omitempty"`
	// Mission is an extension (ExtMission): the mission's current version
	// and stage.
	Mission *MissionInfo `json:"mission,omitempty"`
}

// Validate checks that scope is present and well formed.
func (r *AuthorizationCheckResponse) Validate() error {
	if r.Scope == nil {
		return missing("scope")
	}
	if err := r.Scope.validate("scope"); err != nil {
		return err
	}
	return checkMission(r.Mission)
}

// CloseAction is how a Service ends a delegation at the Authority's close
// endpoint (hardening draft).
type CloseAction string

// Close actions.
const (
	CloseComplete CloseAction = "complete"
	CloseRevoke   CloseAction = "revoke"
)

// AuthorizationCloseRequest is the body of POST
// {agentpass_authorization_close_url}.
type AuthorizationCloseRequest struct {
	AuthorizationID string      `json:"authorization_id"`
	Action          CloseAction `json:"action"`
	Reason          string      `json:"reason,omitempty"`
}

// Validate checks authorization_id and action.
func (r *AuthorizationCloseRequest) Validate() error {
	if r.AuthorizationID == "" {
		return missing("authorization_id")
	}
	if r.Action == "" {
		return missing("action")
	}
	if r.Action != CloseComplete && r.Action != CloseRevoke {
		return invalid("action", `must be "complete" or "revoke"`)
	}
	if len(r.Reason) > 1024 {
		return invalid("reason", "longer than 1024 bytes")
	}
	return nil
}

// DelegationState is the lifecycle state of a delegation.
type DelegationState string

// Delegation states. Only Active answers 200 at an authorization check.
const (
	DelegationActive    DelegationState = "active"
	DelegationSuspended DelegationState = "suspended"
	DelegationCompleted DelegationState = "completed"
	DelegationRevoked   DelegationState = "revoked"
	DelegationExpired   DelegationState = "expired"
)

// AuthorizationCloseResponse is the answer of the close endpoint.
type AuthorizationCloseResponse struct {
	Status   DelegationState `json:"status"`
	ClosedAt time.Time       `json:"closed_at"`
}

// Validate checks status and closed_at.
func (r *AuthorizationCloseResponse) Validate() error {
	if r.Status != DelegationCompleted && r.Status != DelegationRevoked {
		return invalid("status", `must be "completed" or "revoked"`)
	}
	if r.ClosedAt.IsZero() {
		return missing("closed_at")
	}
	return nil
}
