package pass

import (
	"bytes"
	"encoding/json"
	"github.com/agentpass-go/agentpass/internal/jsonscan"
	"time"
)

// PassType is the kind of access an AgentPass is redeemed for.
type PassType string

// Pass types.
const (
	BrowserSession PassType = "browser_session"
	BearerToken    PassType = "bearer_token"
)

// Valid reports whether t is one of the two pass types.
func (t PassType) Valid() bool { return t == BrowserSession || t == BearerToken }

func checkType(field string, t PassType) error {
	if t == "" {
		return missing(field)
	}
	if !t.Valid() {
		return invalid(field, `must be "browser_session" or "bearer_token"`)
	}
	return nil
}

// Cnf is a confirmation object holding the public JWK of the Harness's
// holder-binding key (§3.1.1). The key is kept as raw JSON so documents
// re-encode exactly; package dpop parses and compares keys by thumbprint.
type Cnf struct {
	JWK json.RawMessage `json:"jwk"`
}

// privateJWKMembers are the JWK members that only private keys carry
// (RFC 7518 §6; "k" is a symmetric key).
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

func (c *Cnf) validate(field string) error {
	raw := bytes.TrimSpace(c.JWK)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return missing(field + ".jwk")
	}
	if hasKty, private, ok := jwkMembers(raw); ok {
		switch {
		case !hasKty:
			return invalid(field+".jwk", "has no kty member")
		case private >= 0:
			return invalid(field+".jwk", "must be a public key (has private member "+privateJWKMembers[private]+")")
		}
		return nil
	}
	return validateJWKSlow(field, raw)
}

// validateJWKSlow is the check of Cnf.validate through a map of the
// members: the path of a key with escapes or of a body that is not an
// object, and the reference of FuzzJWKMembers.
func validateJWKSlow(field string, raw []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return invalid(field+".jwk", "must be a JSON object")
	}
	if _, ok := m["kty"]; !ok {
		return invalid(field+".jwk", "has no kty member")
	}
	for _, p := range privateJWKMembers {
		if _, ok := m[p]; ok {
			return invalid(field+".jwk", "must be a public key (has private member "+p+")")
		}
	}
	return nil
}

// JWTContainer carries a compact JWT, as harness.attestation,
// task.attestation and harness_proof do.
type JWTContainer struct {
	JWT string `json:"jwt"`
}

// jwkMembers reads the top-level member names of the JSON object raw
// without decoding it: whether kty is one, and the first of
// privateJWKMembers (in that list's order) that is, -1 if none. ok is false
// for anything but a valid object whose names have no escapes; the caller
// then takes the map path, which reads the same names (FuzzJWKMembers).
// Every holder key of a validation answer passes here, and a map of its
// members cost a dozen allocations.
func jwkMembers(raw []byte) (hasKty bool, private int, ok bool) {
	if len(raw) == 0 || raw[0] != '{' || !jsonscan.Valid(raw) {
		return false, -1, false
	}
	var seen uint
	for i := jsonscan.SkipSpace(raw, 1); raw[i] != '}'; {
		end := jsonscan.StringEnd(raw, i)
		name := raw[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			return false, -1, false
		}
		if string(name) == "kty" {
			hasKty = true
		} else {
			for k, p := range privateJWKMembers {
				if string(name) == p {
					seen |= 1 << k
				}
			}
		}
		i = jsonscan.SkipSpace(raw, end)
		i = jsonscan.SkipSpace(raw, jsonscan.ValueEnd(raw, jsonscan.SkipSpace(raw, i+1)))
		if raw[i] == ',' {
			i = jsonscan.SkipSpace(raw, i+1)
		}
	}
	private = -1
	for k := range privateJWKMembers {
		if seen&(1<<k) != 0 {
			private = k
			break
		}
	}
	return hasKty, private, true
}

func (j *JWTContainer) validate(field string) error {
	if j.JWT == "" {
		return missing(field + ".jwt")
	}
	return nil
}

// IssuanceRequest is the body of POST {agentpass_issuance_url} (§5.3.1).
type IssuanceRequest struct {
	Type    PassType    `json:"type"`
	Service ServiceRef  `json:"service"`
	User    User        `json:"user"`
	Harness HarnessInfo `json:"harness"`
	Task    Task        `json:"task"`
	Intent  *Intent     `json:"intent,omitempty"`
	// Stages is an optional stage plan (an extension member, ExtStages;
	// plain v0.1 Authorities ignore it): the Authority approves the union
	// of the stages' scopes and lets the Harness hold only the current
	// stage's.
	Stages []Stage `json:"stages,omitempty"`
	// Scope is an extension member (ExtCompile): the scope the Harness
	// asks for. Absent, the Authority's proposal for the task is the
	// request; "*" asks for "what the task needs". A v0.1 Authority
	// ignores it.
	Scope Scope `json:"scope,omitempty"`
}

// ServiceRef names the Service a pass is for by its origin.
type ServiceRef struct {
	Origin string `json:"origin"`
}

// HarnessInfo identifies the Harness, with its optional holder-binding key and
// vendor attestation.
type HarnessInfo struct {
	ID          string        `json:"id"`
	Cnf         *Cnf          `json:"cnf,omitempty"`
	Attestation *JWTContainer `json:"attestation,omitempty"`
	// Extensions lists the extension URIs the Harness speaks (an extension
	// member; plain v0.1 Authorities ignore it). ExtHolderBinding here
	// makes the pass require hardened holder proofs.
	Extensions HarnessExtensions `json:"extensions,omitempty"`
}

// Task is the task a pass is for, in every document that names one: the
// issuance and delegation requests (with Attestation), the available-scopes
// request, and the validation response (with Attested). One type, so a
// task read from one document can be handed on in the next.
type Task struct {
	ID          string        `json:"id,omitempty"`
	Description string        `json:"description,omitempty"`
	Attestation *JWTContainer `json:"attestation,omitempty"`
	// Class is an extension member (ExtCompile): a task-class tag an
	// Authority's templates may match, 1 to 64 letters, digits, '.', '_'
	// or '-'.
	Class string `json:"class,omitempty"`
	// Attested says the Authority verified a task attestation; set only in
	// validation responses.
	Attested bool `json:"attested,omitempty"`
}

// Intent carries what the Harness intends to do with a browser session.
type Intent struct {
	DestinationURL string `json:"destination_url,omitempty"`
}

// Validate checks the request against the issuance-request schema, and that
// an attestation comes with a holder-binding key: both attestations are
// bound to that key, and without it they would prove nothing.
func (r *IssuanceRequest) Validate() error {
	if err := checkType("type", r.Type); err != nil {
		return err
	}
	if err := checkOriginField("service.origin", r.Service.Origin); err != nil {
		return err
	}
	if err := checkEmail("user.email", r.User.Email); err != nil {
		return err
	}
	if r.Harness.ID == "" {
		return missing("harness.id")
	}
	if r.Harness.Cnf != nil {
		if err := r.Harness.Cnf.validate("harness.cnf"); err != nil {
			return err
		}
	}
	if r.Harness.Attestation != nil {
		if err := r.Harness.Attestation.validate("harness.attestation"); err != nil {
			return err
		}
		if r.Harness.Cnf == nil {
			return invalid("harness.cnf", "required when harness.attestation is present")
		}
	}
	if r.Task.ID == "" {
		return missing("task.id")
	}
	if r.Task.Description == "" {
		return missing("task.description")
	}
	if r.Task.Attestation != nil {
		if err := r.Task.Attestation.validate("task.attestation"); err != nil {
			return err
		}
		if r.Harness.Cnf == nil {
			return invalid("harness.cnf", "required when task.attestation is present")
		}
	}
	if r.Intent != nil {
		if err := checkOptionalURL("intent.destination_url", r.Intent.DestinationURL); err != nil {
			return err
		}
	}
	if r.Stages != nil {
		if err := ValidateStages(r.Stages); err != nil {
			return err
		}
	}
	if r.Task.Class != "" && !taskClass(r.Task.Class) {
		return invalid("task.class", "must be 1 to 64 letters, digits, '.', '_' or '-'")
	}
	return checkRequestedScope("scope", r.Scope)
}

// Status is the state of an issuance request.
type Status string

// Issuance statuses. Pending is the only non-terminal one.
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved"
	StatusDenied   Status = "denied"
	StatusExpired  Status = "expired"
	StatusCanceled Status = "canceled"
)

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusApproved, StatusDenied, StatusExpired, StatusCanceled:
		return true
	}
	return false
}

// Terminal reports whether s never changes again.
func (s Status) Terminal() bool { return s.Valid() && s != StatusPending }

// IssuanceStatus is the answer of the issuance and issuance-status endpoints
// (§5.3).
type IssuanceStatus struct {
	ID          string     `json:"id"`
	Status      Status     `json:"status"`
	Type        PassType   `json:"type,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	PollAfterMS *int64     `json:"poll_after_ms,omitempty"`
	Links       *Links     `json:"links,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	AgentPass   *AgentPass `json:"agentpass,omitempty"`
	// Proposal is an extension (ExtCompile): the Authority's scope
	// proposal for a pending request, given only to a poller proving the
	// holder key, and only about the scopes the Harness requested.
	Proposal *ScopeProposal `json:"proposal,omitempty"`
	// Mission is an extension (ExtMission): the request's mission, from
	// the first answer on. Status freezes at approved once approved, while
	// Mission.State carries the live state.
	Mission *MissionInfo `json:"mission,omitempty"`
}

// Links are related URLs of an issuance request.
type Links struct {
	Self   string `json:"self,omitempty"`
	Events string `json:"events,omitempty"`
	// Approval is an extension: a page where a person can approve the
	// request, shown to the User by a Harness while it waits.
	Approval string `json:"approval,omitempty"`
}

// AgentPass is an opaque, single-use credential. Its Value is a secret: never
// log it.
type AgentPass struct {
	Type  PassType `json:"type"`
	Value string   `json:"value"`
}

// String hides the value, so a pass printed by mistake leaks nothing.
func (p AgentPass) String() string { return "AgentPass{" + string(p.Type) + ", value hidden}" }

// Validate checks the status document against the issuance-status schema:
// an approved status must carry a redeemable agentpass, or the Harness would
// have nothing to redeem.
func (s *IssuanceStatus) Validate() error {
	if s.ID == "" {
		return missing("id")
	}
	if s.Status == "" {
		return missing("status")
	}
	if !s.Status.Valid() {
		return invalid("status", "unknown status")
	}
	if s.Type != "" && !s.Type.Valid() {
		return invalid("type", `must be "browser_session" or "bearer_token"`)
	}
	if s.PollAfterMS != nil && *s.PollAfterMS < 0 {
		return invalid("poll_after_ms", "must not be negative")
	}
	if s.AgentPass != nil {
		if err := checkType("agentpass.type", s.AgentPass.Type); err != nil {
			return err
		}
		if s.AgentPass.Value == "" {
			return missing("agentpass.value")
		}
	}
	if s.Status == StatusApproved && s.AgentPass == nil {
		return missing("agentpass")
	}
	return checkMission(s.Mission)
}

// checkMission validates an optional mission member.
func checkMission(m *MissionInfo) error {
	if m == nil {
		return nil
	}
	return m.Validate()
}
