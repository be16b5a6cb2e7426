package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// APIRequest is an issuance request as the admin API shows it.
type APIRequest struct {
	ID             string        `json:"id"`
	Status         pass.Status   `json:"status"`
	User           string        `json:"user"`
	HarnessID      string        `json:"harness_id"`
	AgentID        string        `json:"agent_id,omitempty"`
	Tier           dpop.Tier     `json:"tier"`
	TaskID         string        `json:"task_id,omitempty"`
	Task           string        `json:"task"`
	TaskAttested   bool          `json:"task_attested"`
	Type           pass.PassType `json:"type"`
	Service        string        `json:"service"`
	DestinationURL string        `json:"destination_url,omitempty"`
	AvailableScope pass.Scope    `json:"available_scope"`
	ProposedScope  pass.Scope    `json:"proposed_scope,omitempty"`
	// RequestedScope, Proposal and Diff compare what the agent asked for
	// with the Authority's proposal; model reasons are marked untrusted.
	RequestedScope pass.Scope            `json:"requested_scope,omitempty"`
	Proposal       []pass.ScopeRationale `json:"proposal,omitempty"`
	Diff           *pass.ScopeDiff       `json:"diff,omitempty"`
	CreatedAt      time.Time             `json:"created_at"`
	ExpiresAt      time.Time             `json:"expires_at"`
	ApprovalURL    string                `json:"approval_url"`
	Decision       *APIDecision          `json:"decision,omitempty"`
}

// APIDecision is the evidence of a decision.
type APIDecision struct {
	Status    pass.Status `json:"status"`
	DecidedBy string      `json:"decided_by"`
	DecidedAt time.Time   `json:"decided_at"`
	Reason    string      `json:"reason,omitempty"`
	Scope     pass.Scope  `json:"scope,omitempty"`
}

// APIAuthorization is a live delegation as the admin API shows it.
type APIAuthorization struct {
	ID           string               `json:"id"`
	RequestID    string               `json:"request_id"`
	State        pass.DelegationState `json:"state"`
	User         string               `json:"user"`
	HarnessID    string               `json:"harness_id"`
	AgentID      string               `json:"agent_id,omitempty"`
	Tier         dpop.Tier            `json:"tier"`
	Service      string               `json:"service"`
	Type         pass.PassType        `json:"type"`
	Task         string               `json:"task"`
	Scope        pass.Scope           `json:"scope"`
	GrantedScope pass.Scope           `json:"granted_scope"`
	ApprovedBy   string               `json:"approved_by"`
	CreatedAt    time.Time            `json:"created_at"`
	ExpiresAt    time.Time            `json:"expires_at"`
	StateBy      string               `json:"state_by,omitempty"`
	StateReason  string               `json:"state_reason,omitempty"`
}

// DecideRequest is the body of POST {base}/api/decide.
type DecideRequest struct {
	ID      string     `json:"id"`
	Outcome string     `json:"outcome"` // approve, deny, cancel
	Scope   pass.Scope `json:"scope,omitempty"`
	Reason  string     `json:"reason,omitempty"`
	// MaxDepth lets an approved mission delegate to sub-agents this many
	// generations deep (capped by the Authority); zero allows none.
	MaxDepth int `json:"max_depth,omitempty"`
}

// RevokeRequest is the body of POST {base}/api/revoke.
type RevokeRequest struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// SuspendRequest is the body of POST {base}/api/suspend and
// {base}/api/resume: an authorization id or a mission id.
type SuspendRequest struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// apiError is an admin API refusal in the shape of every AgentPass error
// document ({"error": {"code", "message"}}), so one client parses both.
func apiError(code, message string) pass.ErrorResponse {
	return pass.ErrorResponse{Error: pass.ErrorBody{Code: pass.Code(code), Message: message}}
}

// writeJSON answers v as the protocol endpoints do (one writer, with
// nosniff).
func writeJSON(w http.ResponseWriter, status int, v any) { httpx.WriteJSON(w, status, v) }

func (p *Console) apiRequest(r *authority.Request) APIRequest {
	now := p.now()
	out := APIRequest{
		ID: r.MissionID, Status: r.StatusAt(now), User: r.User, HarnessID: r.HarnessID, AgentID: r.AgentID, Tier: r.Tier,
		TaskID: r.TaskID, Task: r.TaskDescription, TaskAttested: r.TaskAttested, Type: r.Type, Service: r.Service,
		DestinationURL: r.DestinationURL, AvailableScope: r.AvailableScope, ProposedScope: r.ProposedScope,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, ApprovalURL: RequestURL(p.baseURL, r.MissionID),
	}
	out.RequestedScope = r.RequestedScope
	if r.Proposal != nil {
		for _, ra := range r.Proposal.Scopes {
			out.Proposal = append(out.Proposal, pass.ScopeRationale{Scope: ra.Scope, Basis: string(ra.Basis), Source: ra.Source, Why: ra.Why, Untrusted: ra.Untrusted()})
		}
	}
	if r.Proposal != nil || r.RequestedScope != nil {
		d := r.Diff()
		out.Diff = &pass.ScopeDiff{Over: d.Over, Under: d.Under}
	}
	if d := r.Decision; d != nil {
		out.Decision = &APIDecision{Status: d.Status, DecidedBy: d.DecidedBy, DecidedAt: d.DecidedAt, Reason: d.Reason, Scope: d.Scope}
	}
	return out
}

func apiAuthorization(a *authority.Authorization, now time.Time) APIAuthorization {
	return APIAuthorization{
		ID: a.ID, RequestID: a.MissionID, State: a.StateAt(now), User: a.User, HarnessID: a.HarnessID, AgentID: a.AgentID,
		Tier: a.Tier, Service: a.Service, Type: a.Type, Task: a.TaskDescription, Scope: a.Scope, GrantedScope: a.GrantedScope,
		ApprovedBy: a.Approval.DecidedBy, CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt, StateBy: a.StateBy, StateReason: a.StateReason,
	}
}

func (p *Console) apiPending(w http.ResponseWriter, r *http.Request) {
	list, err := p.a.Pending(r.Context(), authority.ListOptions{Now: p.now()})
	if err != nil {
		p.apiFail(w, err)
		return
	}
	out := struct {
		Pending []APIRequest `json:"pending"`
		// Transitions are the stage moves waiting for a person
		// (decide them with POST {base}/api/decide-stage).
		Transitions []APITransition `json:"transitions"`
	}{Pending: []APIRequest{}, Transitions: []APITransition{}}
	for _, req := range list {
		if p.may(r, req.User) {
			out.Pending = append(out.Pending, p.apiRequest(req))
		}
	}
	moves, err := p.pendingTransitions(r.Context())
	if err != nil {
		p.apiFail(w, err)
		return
	}
	for i := range moves {
		m := &moves[i]
		if !p.may(r, m.User.Email) {
			continue
		}
		pt, to := m.AuthorityModel.PendingTransition, targetStage(m)
		out.Transitions = append(out.Transitions, APITransition{MissionID: m.ID, User: m.User.Email, HarnessID: m.Harness.ID,
			Service: m.Service, Task: m.Task.Description, From: m.AuthorityModel.Stage, To: pt.To, Gate: to.Gate, Scope: to.Scope,
			Reason: pt.Reason, RequestedAt: pt.RequestedAt, ExpiresAt: pt.ExpiresAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (p *Console) apiAuthorizations(w http.ResponseWriter, r *http.Request) {
	now := p.now()
	list, err := p.a.Authorizations(r.Context(), authority.ListOptions{Now: now})
	if err != nil {
		p.apiFail(w, err)
		return
	}
	out := struct {
		Authorizations []APIAuthorization `json:"authorizations"`
	}{Authorizations: []APIAuthorization{}}
	for _, a := range list {
		if p.may(r, a.User) {
			out.Authorizations = append(out.Authorizations, apiAuthorization(a, now))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	// Any Content-Type is read as JSON (curl -d sends a form type): the API
	// needs the bearer token, which no cross-site form can send.
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError("invalid_request", "invalid JSON body: "+err.Error()))
		return false
	}
	return true
}

func (p *Console) apiDecide(w http.ResponseWriter, r *http.Request) {
	var in DecideRequest
	if !decodeJSON(w, r, &in) {
		return
	}
	d := authority.Decision{Scope: in.Scope, Reason: in.Reason, MaxDepth: in.MaxDepth}
	switch in.Outcome {
	case "approve":
		d.Outcome = authority.Approve
	case "deny":
		d.Outcome = authority.Deny
	case "cancel":
		d.Outcome = authority.Cancel
	default:
		writeJSON(w, http.StatusBadRequest, apiError("invalid_request", `outcome must be "approve", "deny" or "cancel"`))
		return
	}
	if in.Scope != nil && len(in.Scope) == 0 {
		writeJSON(w, http.StatusBadRequest, apiError("invalid_request", "an empty scope grants nothing: omit it for the proposal, or deny"))
		return
	}
	by, ok := p.authorize(w, r, in.ID)
	if !ok {
		return
	}
	d.DecidedBy = by
	req, err := p.a.Decide(r.Context(), in.ID, d)
	if err != nil {
		p.apiFail(w, err)
		return
	}
	p.log.Info("admin API: decision", "request_id", short(in.ID), "user", req.User, "outcome", string(req.Status), "decided_by", by)
	writeJSON(w, http.StatusOK, struct {
		Request APIRequest `json:"request"`
	}{p.apiRequest(req)})
}

func (p *Console) apiRevoke(w http.ResponseWriter, r *http.Request) {
	var in RevokeRequest
	if !decodeJSON(w, r, &in) {
		return
	}
	by, ok := p.authorize(w, r, in.ID)
	if !ok {
		return
	}
	if in.Reason == "" {
		in.Reason = "revoked through the admin API"
	}
	m, err := p.a.Revoke(r.Context(), in.ID, by, in.Reason)
	if err != nil {
		p.apiFail(w, err)
		return
	}
	p.log.Info("admin API: revoked", "id", short(in.ID), "mission_id", m.ID, "user", m.User.Email, "by", by)
	if strings.HasPrefix(in.ID, pass.MissionIDPrefix) {
		writeJSON(w, http.StatusOK, pass.MissionResponse{Mission: *m})
		return
	}
	a, err := p.a.Authorization(r.Context(), in.ID)
	if err != nil {
		p.apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Authorization APIAuthorization `json:"authorization"`
	}{apiAuthorization(a, p.now())})
}

// apiSuspend suspends (resume false) or resumes the mission of an
// authorization id or a mission id and answers its operator record.
func (p *Console) apiSuspend(resume bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in SuspendRequest
		if !decodeJSON(w, r, &in) {
			return
		}
		by, ok := p.authorize(w, r, in.ID)
		if !ok {
			return
		}
		var m *pass.MissionRecord
		var err error
		if resume {
			m, err = p.a.Resume(r.Context(), in.ID, by)
		} else {
			if in.Reason == "" {
				in.Reason = "suspended through the admin API"
			}
			m, err = p.a.Suspend(r.Context(), in.ID, by, in.Reason)
		}
		if err != nil {
			p.apiFail(w, err)
			return
		}
		p.log.Info("admin API: mission "+map[bool]string{false: "suspended", true: "resumed"}[resume], "id", short(in.ID),
			"mission_id", m.ID, "state", string(m.State), "version", m.Version, "by", by)
		writeJSON(w, http.StatusOK, pass.MissionResponse{Mission: *m})
	}
}

func (p *Console) apiFail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, authority.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError("not_found", "no such request or authorization"))
	case errors.Is(err, authority.ErrNotPending):
		writeJSON(w, http.StatusConflict, apiError("not_pending", "the request was already decided"))
	case errors.Is(err, authority.ErrExpired):
		writeJSON(w, http.StatusConflict, apiError("expired", "the request expired"))
	case errors.Is(err, authority.ErrState), errors.Is(err, authority.ErrTerminal):
		writeJSON(w, http.StatusConflict, apiError("not_live", "the authorization or mission is not in a state that allows this"))
	case errors.Is(err, authority.ErrScopeNotAvailable), errors.Is(err, authority.ErrInvalidDecision):
		writeJSON(w, http.StatusBadRequest, apiError("invalid_decision", err.Error()))
	default:
		p.log.Error("admin API", "err", err)
		writeJSON(w, http.StatusInternalServerError, apiError("internal", "internal error; see the Authority's log"))
	}
}

// authorize answers 404 unless the caller may decide for the user of id (a
// mission or authorization id), so that ids of other domains stay
// unconfirmed; else it returns the Subject to record.
func (p *Console) authorize(w http.ResponseWriter, r *http.Request, id string) (string, bool) {
	user, err := p.userOf(r.Context(), id)
	if err == nil && !p.may(r, user) {
		err = authority.ErrNotFound
	}
	if err != nil {
		p.apiFail(w, err)
		return "", false
	}
	return who(r).Subject, true
}
