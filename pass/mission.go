package pass

import (
	"strings"
	"time"
)

// This file holds the wire types of the mission extension (ExtMission): the
// governed record behind an authorization_id, with its lifecycle. Plain v0.1
// peers ignore every member defined here.

// MissionState is the lifecycle state of a mission.
type MissionState string

// Mission states. Revoked, expired and completed are terminal.
const (
	MissionPending   MissionState = "pending"
	MissionActive    MissionState = "active"
	MissionSuspended MissionState = "suspended"
	MissionCompleted MissionState = "completed"
	MissionRevoked   MissionState = "revoked"
	MissionExpired   MissionState = "expired"
)

// Terminal reports whether s never changes again.
func (s MissionState) Terminal() bool {
	return s == MissionCompleted || s == MissionRevoked || s == MissionExpired
}

// Valid reports whether s is one of the six states.
func (s MissionState) Valid() bool {
	switch s {
	case MissionPending, MissionActive, MissionSuspended, MissionCompleted, MissionRevoked, MissionExpired:
		return true
	}
	return false
}

// MissionIDPrefix starts every mission id.
const MissionIDPrefix = "msn_"

// MissionInfo is the mission member of issuance status, validation and
// authorization check responses, and of the suspended-404 body: enough for
// a Harness to hold the mission's id while pending, and for a Service to
// order what it learns by Version. Stage, Stages, Ceiling, Parent and Act
// appear only where they apply.
type MissionInfo struct {
	ID      string       `json:"id"`
	State   MissionState `json:"state"`
	Version int64        `json:"version"`
	Stage   string       `json:"stage,omitempty"`
	Stages  []Stage      `json:"stages,omitempty"`
	Ceiling Scope        `json:"ceiling,omitempty"`
	Parent  string       `json:"parent,omitempty"`
	Act     *Actor       `json:"act,omitempty"`
	// HistoryHead is the head of the mission's hash-chained history when
	// the answer was made (validation responses). A Service logs it at
	// redemption, so an auditor can later show that the Authority's log was
	// not rewritten before that point.
	HistoryHead string `json:"history_head,omitempty"`
}

// Validate checks the members every mission member must carry.
func (m *MissionInfo) Validate() error {
	if !strings.HasPrefix(m.ID, MissionIDPrefix) || len(m.ID) > maxMissionID {
		return invalid("mission.id", "not a mission id")
	}
	if !m.State.Valid() {
		return invalid("mission.state", "unknown state")
	}
	if m.Version < 1 {
		return invalid("mission.version", "must be a positive integer")
	}
	if h := m.HistoryHead; h != "" && (len(h) != len(historyHashPrefix)+64 || !strings.HasPrefix(h, historyHashPrefix)) {
		return invalid("mission.history_head", "not a sha256: history hash")
	}
	if p := m.Parent; p != "" && (!strings.HasPrefix(p, MissionIDPrefix) || len(p) > maxMissionID) {
		return invalid("mission.parent", "not a mission id")
	}
	return checkAct(m.Act, m.Parent)
}

// historyHashPrefix starts every history hash.
const historyHashPrefix = "sha256:"

// maxMissionID bounds a mission id (prefix plus a base64url encoding of at
// least 128 random bits, with room to spare).
const maxMissionID = 128

// Stage is one step of a staged mission's plan.
type Stage struct {
	Name  string `json:"name"`
	Scope Scope  `json:"scope"`
	Gate  string `json:"gate,omitempty"`
}

// Gates of a stage: what entering it needs. The Authority raises a gate to
// the floor the effects of the stage's new scopes demand.
const (
	GateAuto   = "auto"   // no further decision
	GatePolicy = "policy" // the Authority's policy decides at transition time
	GateHuman  = "human"  // a person decides
)

// MaxStages bounds a stage plan: a plan is shown whole to the person who
// approves it, so it stays short.
const MaxStages = 8

// ValidateStages checks the shape of a stage plan: 1 to MaxStages stages
// with unique names of 1 to 32 characters from [a-z0-9_-], each with a
// non-empty scope of concrete values (no "*": a stage is approved as
// listed) and a known gate or none.
func ValidateStages(stages []Stage) error {
	if len(stages) == 0 || len(stages) > MaxStages {
		return invalid("stages", "a plan has 1 to 8 stages")
	}
	for i, st := range stages {
		if !validStageName(st.Name) {
			return invalid("stages.name", "1 to 32 characters of a-z, 0-9, _ and -")
		}
		for _, o := range stages[:i] {
			if o.Name == st.Name {
				return invalid("stages.name", "stage names must be unique")
			}
		}
		if len(st.Scope) == 0 || len(st.Scope) > 256 || st.Scope.HasWildcard() {
			return invalid("stages.scope", "each stage needs 1 to 256 concrete scopes")
		}
		for _, v := range st.Scope {
			if !scopeToken(v) || v == "" || len(v) > maxScopeValue {
				return invalid("stages.scope", "not a scope value")
			}
		}
		switch st.Gate {
		case "", GateAuto, GatePolicy, GateHuman:
		default:
			return invalid("stages.gate", "must be auto, policy or human")
		}
	}
	return nil
}

// validStageName reports whether name is a well-formed stage name.
func validStageName(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// MissionStageRequest asks to move a mission to another stage of its plan
// (POST {mission_stage}, with a holder proof). ExpectedVersion, when not
// zero, must be the mission's current version.
type MissionStageRequest struct {
	MissionID       string `json:"mission_id"`
	To              string `json:"to"`
	ExpectedVersion int64  `json:"expected_version,omitempty"`
	Reason          string `json:"reason,omitempty"`
}

// Validate checks the ids, the version and the reason's size.
func (r *MissionStageRequest) Validate() error {
	switch {
	case !strings.HasPrefix(r.MissionID, MissionIDPrefix) || len(r.MissionID) > maxMissionID:
		return invalid("mission_id", "not a mission id")
	case !validStageName(r.To):
		return invalid("to", "not a stage name")
	case r.ExpectedVersion < 0:
		return invalid("expected_version", "must not be negative")
	case len(r.Reason) > maxReason:
		return invalid("reason", "longer than 1024 bytes")
	}
	return nil
}

// MissionStageResponse answers a stage request: the Harness view of the
// mission, and, when a person must decide (202), how long to wait before
// reading the mission again.
type MissionStageResponse struct {
	Mission     MissionRecord `json:"mission"`
	PollAfterMs int           `json:"poll_after_ms,omitempty"`
}

// Validate checks the members every view carries.
func (r *MissionStageResponse) Validate() error {
	return (&MissionResponse{Mission: r.Mission}).Validate()
}

// Actor is an RFC 8693 style actor chain: Sub acts, on behalf of whoever
// Act names, outermost first. MissionID names each actor's mission, so a
// Service holding an ancestor's delegation can end its descendants with it.
type Actor struct {
	Sub       string `json:"sub"`
	MissionID string `json:"mission_id,omitempty"`
	Act       *Actor `json:"act,omitempty"`
}

// maxActors bounds an actor chain: the child, and an ancestor per
// generation an Authority may allow.
const maxActors = maxDelegationDepth + 1

// maxActorSub bounds an actor's sub (an agent or harness id).
const maxActorSub = 512

// checkAct validates an actor chain: bounded, every sub present, every
// mission id well formed, and the second actor's mission the parent's.
func checkAct(a *Actor, parent string) error {
	for i := 0; a != nil; i, a = i+1, a.Act {
		if i >= maxActors {
			return invalid("mission.act", "too many actors")
		}
		if a.Sub == "" || len(a.Sub) > maxActorSub {
			return invalid("mission.act.sub", "must be a non-empty id")
		}
		if id := a.MissionID; id != "" && (!strings.HasPrefix(id, MissionIDPrefix) || len(id) > maxMissionID) {
			return invalid("mission.act.mission_id", "not a mission id")
		}
		if i == 1 && a.MissionID != "" && parent != "" && a.MissionID != parent {
			return invalid("mission.act", "the second actor's mission is not the parent")
		}
	}
	return nil
}

// MissionEnd records how a mission reached a terminal state.
type MissionEnd struct {
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
	Cause  string    `json:"cause"`
	Reason string    `json:"reason,omitempty"`
}

// Causes of a mission's end (MissionEnd.Cause).
const (
	CauseDenied         = "denied"
	CauseCanceled       = "canceled"
	CauseRequestExpired = "request_expired"
	CausePassExpired    = "pass_expired"
	CauseHarness        = "harness"
	CauseService        = "service"
	CauseOperator       = "operator"
	CauseClock          = "clock"
	CauseCascade        = "cascade"
)

// MissionHarness identifies the Harness of a mission: its self-declared id,
// its trust tier and the RFC 7638 thumbprint of its holder key.
type MissionHarness struct {
	ID   string `json:"id"`
	Tier string `json:"tier,omitempty"`
	JKT  string `json:"jkt,omitempty"`
}

// MissionTask is the task of a mission.
type MissionTask struct {
	ID                string `json:"id"`
	Description       string `json:"description,omitempty"`
	DescriptionSHA256 string `json:"description_sha256,omitempty"`
	Attested          bool   `json:"attested"`
}

// AuthorityModel is what an enforcement point can evaluate now.
type AuthorityModel struct {
	Ceiling           Scope    `json:"ceiling"`
	Scope             Scope    `json:"scope"`
	Stage             string   `json:"stage,omitempty"`
	Stages            []Stage  `json:"stages,omitempty"`
	PendingTransition *Pending `json:"pending_transition"`
}

// Pending is a stage transition waiting for its gate. Reason is the
// Harness's own text, shown to the person who decides.
type Pending struct {
	To          string    `json:"to"`
	RequestedAt time.Time `json:"requested_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	Reason      string    `json:"reason,omitempty"`
}

// Approval is the evidence of a mission's approval decision.
type Approval struct {
	Outcome          string     `json:"outcome,omitempty"`
	Method           string     `json:"method,omitempty"`
	DecidedBy        string     `json:"decided_by,omitempty"`
	DecidedAt        *time.Time `json:"decided_at,omitempty"`
	Reason           string     `json:"reason,omitempty"`
	Policy           *PolicyRef `json:"policy"`
	DisclosureSHA256 string     `json:"disclosure_sha256,omitempty"`
	Root             *string    `json:"root"`
}

// Approval methods (Approval.Method).
const (
	ApprovalPolicy     = "policy"
	ApprovalHuman      = "human"
	ApprovalDelegation = "delegation"
)

// PolicyRef names the policy, and its version, that decided.
type PolicyRef struct {
	ID      string `json:"id"`
	Version string `json:"version,omitempty"`
}

// MissionDelegation is a mission's place in the delegation graph.
type MissionDelegation struct {
	Depth       int      `json:"depth"`
	MaxDepth    int      `json:"max_depth"`
	MaxChildren int      `json:"max_children"`
	Parent      *string  `json:"parent"`
	Children    []string `json:"children,omitempty"`
	Act         *Actor   `json:"act"`
}

// MissionAuthorization is one redemption of a mission's pass.
type MissionAuthorization struct {
	ID         string    `json:"id"`
	Service    string    `json:"service"`
	Stage      string    `json:"stage,omitempty"`
	RedeemedAt time.Time `json:"redeemed_at"`
	State      string    `json:"state"`
}

// HistoryEntry is one link of a mission's hash-chained history: Hash is
// "sha256:" and the hex SHA-256 of the JCS form of the entry without Hash,
// and Prev the previous entry's Hash ("" for the first).
type HistoryEntry struct {
	Seq     int64          `json:"seq"`
	At      time.Time      `json:"at"`
	Type    string         `json:"type"`
	By      string         `json:"by"`
	Version int64          `json:"version"`
	Details map[string]any `json:"details,omitempty"`
	Prev    string         `json:"prev"`
	Hash    string         `json:"hash"`
}

// History is a mission's history: its head hash, the number of entries,
// and the entries where the view includes them.
type History struct {
	Head   string         `json:"head"`
	Count  int64          `json:"count"`
	Events []HistoryEntry `json:"events,omitempty"`
}

// MissionRecord is the mission record in one of its three views (operator,
// Service, Harness): members a view leaves out are nil or empty.
type MissionRecord struct {
	ID             string                 `json:"id"`
	Authority      string                 `json:"authority"`
	State          MissionState           `json:"state"`
	Version        int64                  `json:"version"`
	CreatedAt      time.Time              `json:"created_at"`
	ActivatedAt    *time.Time             `json:"activated_at,omitempty"`
	ExpiresAt      *time.Time             `json:"expires_at,omitempty"`
	Ended          *MissionEnd            `json:"ended"`
	Service        string                 `json:"service"`
	User           User                   `json:"user"`
	Agent          Agent                  `json:"agent"`
	Harness        MissionHarness         `json:"harness"`
	Task           MissionTask            `json:"task"`
	AuthorityModel AuthorityModel         `json:"authority_model"`
	ScopeBasis     *ScopeBasis            `json:"scope_basis,omitempty"`
	Approval       *Approval              `json:"approval,omitempty"`
	Delegation     *MissionDelegation     `json:"delegation,omitempty"`
	Authorizations []MissionAuthorization `json:"authorizations"`
	History        History                `json:"history"`
}

// MissionResponse wraps a mission record: {"mission": {...}}.
type MissionResponse struct {
	Mission MissionRecord `json:"mission"`
}

// Validate checks the members every view carries.
func (r *MissionResponse) Validate() error {
	m := &r.Mission
	info := MissionInfo{ID: m.ID, State: m.State, Version: m.Version}
	if err := info.Validate(); err != nil {
		return err
	}
	return checkURL("mission.authority", m.Authority)
}

// MissionReadRequest asks for a mission record: by AuthorizationID with a
// Service assertion, or by MissionID with a holder proof; exactly one.
type MissionReadRequest struct {
	AuthorizationID string `json:"authorization_id,omitempty"`
	MissionID       string `json:"mission_id,omitempty"`
}

// Validate checks that exactly one id is given.
func (r *MissionReadRequest) Validate() error {
	if (r.AuthorizationID == "") == (r.MissionID == "") {
		return invalid("body", "exactly one of authorization_id and mission_id is required")
	}
	if r.MissionID != "" && (!strings.HasPrefix(r.MissionID, MissionIDPrefix) || len(r.MissionID) > maxMissionID) {
		return invalid("mission_id", "not a mission id")
	}
	if len(r.AuthorizationID) > maxMissionID {
		return invalid("authorization_id", "too long")
	}
	return nil
}

// Outcomes a Harness reports when it completes a mission.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomeAbandoned = "abandoned"
)

// maxReason bounds free-text reasons in mission calls.
const maxReason = 1024

// MissionCompleteRequest ends a mission from its Harness.
type MissionCompleteRequest struct {
	MissionID string `json:"mission_id"`
	Outcome   string `json:"outcome"`
	Reason    string `json:"reason,omitempty"`
}

// Validate checks the id, the outcome and the reason's size.
func (r *MissionCompleteRequest) Validate() error {
	if !strings.HasPrefix(r.MissionID, MissionIDPrefix) || len(r.MissionID) > maxMissionID {
		return invalid("mission_id", "not a mission id")
	}
	switch r.Outcome {
	case OutcomeSucceeded, OutcomeFailed, OutcomeAbandoned:
	default:
		return invalid("outcome", "must be succeeded, failed or abandoned")
	}
	if len(r.Reason) > maxReason {
		return invalid("reason", "longer than 1024 bytes")
	}
	return nil
}

// Observation kinds a Service reports.
const (
	ObservationScopeDenied        = "scope_denied"
	ObservationStageScopeExceeded = "stage_scope_exceeded"
)

// MaxObservations bounds the observations of one report.
const MaxObservations = 50

// Observation is what a Service's middleware refused, aggregated.
type Observation struct {
	Kind    string    `json:"kind"`
	Scope   string    `json:"scope,omitempty"`
	Stage   string    `json:"stage,omitempty"`
	Count   int64     `json:"count"`
	FirstAt time.Time `json:"first_at"`
	LastAt  time.Time `json:"last_at"`
}

// MissionReportRequest carries a Service's observations about one of its
// authorizations.
type MissionReportRequest struct {
	AuthorizationID string        `json:"authorization_id"`
	Observations    []Observation `json:"observations"`
}

// Validate checks the id and each observation.
func (r *MissionReportRequest) Validate() error {
	if r.AuthorizationID == "" || len(r.AuthorizationID) > maxMissionID {
		return invalid("authorization_id", "missing or too long")
	}
	if len(r.Observations) == 0 || len(r.Observations) > MaxObservations {
		return invalid("observations", "must hold 1 to 50 entries")
	}
	for _, o := range r.Observations {
		if o.Kind != ObservationScopeDenied && o.Kind != ObservationStageScopeExceeded {
			return invalid("observations.kind", "unknown kind")
		}
		if o.Count < 1 || o.Count > maxObservationCount || o.LastAt.Before(o.FirstAt) || len(o.Scope) > maxScopeValue || len(o.Stage) > maxScopeValue {
			return invalid("observations", "invalid count, times or size")
		}
		if !scopeToken(o.Scope) || !scopeToken(o.Stage) {
			return invalid("observations", "scope and stage must be scope tokens")
		}
	}
	return nil
}

// maxObservationCount bounds an observation's count to integers that
// JSON and the canonical form of hashed history entries (RFC 8785) carry
// exactly.
const maxObservationCount = 1<<53 - 1

// maxScopeValue bounds a scope or stage name in an observation.
const maxScopeValue = 256

// scopeToken reports whether s uses only the characters of an OAuth scope
// token (RFC 6749's NQCHAR: printable ASCII without space, '"' and '\\').
func scopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
