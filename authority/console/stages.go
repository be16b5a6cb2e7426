package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// This file shows staged missions: the plan with its gates on a request,
// and the stage moves that wait for a person, with approve and deny.

// stageView is one stage of a plan as the page shows it.
type stageView struct {
	Name    string
	Scope   pass.Scope
	Gate    string
	Current bool
}

// transitionView is a stage move waiting for a person.
type transitionView struct {
	MissionID, Short   string
	User, HarnessID    string
	Service, Task      string
	From, To           string
	Gate               string
	Scope              pass.Scope // what the target stage allows
	Reason             string     // the agent's own words
	Requested, Expires string
	ExpiresAbs         string
}

// APITransition is a stage move waiting for a person, as the admin API
// shows it.
type APITransition struct {
	MissionID   string     `json:"mission_id"`
	User        string     `json:"user"`
	HarnessID   string     `json:"harness_id"`
	Service     string     `json:"service"`
	Task        string     `json:"task"`
	From        string     `json:"from"`
	To          string     `json:"to"`
	Gate        string     `json:"gate"`
	Scope       pass.Scope `json:"scope"`
	Reason      string     `json:"reason,omitempty"`
	RequestedAt time.Time  `json:"requested_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
}

// DecideStageRequest is the body of POST {base}/api/decide-stage: the
// mission id and "approve" or "deny".
type DecideStageRequest struct {
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	By      string `json:"by,omitempty"` // recorded as the decider; default "admin-api"
}

// planView renders a plan, marking the current stage.
func planView(stages []pass.Stage, current string) []stageView {
	var out []stageView
	for _, st := range stages {
		gate := st.Gate
		if gate == "" {
			gate = pass.GateAuto
		}
		out = append(out, stageView{Name: st.Name, Scope: st.Scope, Gate: gate, Current: st.Name == current})
	}
	return out
}

// pendingTransitions lists the live missions whose stage move waits for a
// person, oldest move first.
func (p *Console) pendingTransitions(ctx context.Context) ([]pass.MissionRecord, error) {
	page, err := p.a.Missions(ctx, authority.MissionListOptions{States: []pass.MissionState{pass.MissionActive}, Limit: 1000})
	if err != nil {
		return nil, err
	}
	var out []pass.MissionRecord
	for _, m := range page.Missions {
		if m.AuthorityModel.PendingTransition != nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func targetStage(m *pass.MissionRecord) pass.Stage {
	for _, st := range m.AuthorityModel.Stages {
		if st.Name == m.AuthorityModel.PendingTransition.To {
			return st
		}
	}
	return pass.Stage{}
}

func transitionViewOf(m *pass.MissionRecord, now time.Time) transitionView {
	pt, to := m.AuthorityModel.PendingTransition, targetStage(m)
	return transitionView{
		MissionID: m.ID, Short: short(m.ID), User: m.User.Email, HarnessID: m.Harness.ID, Service: m.Service,
		Task: m.Task.Description, From: m.AuthorityModel.Stage, To: pt.To, Gate: to.Gate, Scope: to.Scope, Reason: pt.Reason,
		Requested: ago(pt.RequestedAt, now), Expires: ago(pt.ExpiresAt, now), ExpiresAbs: abs(pt.ExpiresAt),
	}
}

// decideStage is the approve/deny form of a waiting stage move.
func (p *Console) decideStage(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("id")
	by, ok := p.permitted(w, r, id)
	if !ok {
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	var approve bool
	switch r.PostFormValue("action") {
	case "approve":
		approve = true
	case "deny":
	default:
		p.back(w, r, id, "error", "action")
		return
	}
	m, err := p.a.DecideStage(r.Context(), id, approve, by, reason)
	if err != nil {
		p.back(w, r, id, "error", stageErrorCode(err))
		return
	}
	p.log.Info("approval page: stage decision", "mission_id", short(id), "user", m.User.Email, "approve", approve,
		"stage", m.AuthorityModel.Stage, "decided_by", by)
	p.back(w, r, id, "staged", id)
}

func stageErrorCode(err error) string {
	var pe *pass.Error
	if errors.Is(err, authority.ErrState) || errors.As(err, &pe) {
		return "nostage"
	}
	return errorCode(err)
}

// stageNotice is the banner after a stage decision, from the store.
func (p *Console) stageNotice(r *http.Request, id string) *notice {
	m, err := p.a.Mission(r.Context(), id)
	if err != nil || !p.may(r, m.User.Email) {
		return nil
	}
	return &notice{"ok", fmt.Sprintf("Recorded. Mission %s of %s is at stage %s; the Service applies it at its next check.",
		short(m.ID), m.User.Email, m.AuthorityModel.Stage)}
}

func (p *Console) apiDecideStage(w http.ResponseWriter, r *http.Request) {
	var in DecideStageRequest
	if !decodeJSON(w, r, &in) {
		return
	}
	if in.Outcome != "approve" && in.Outcome != "deny" {
		writeJSON(w, http.StatusBadRequest, apiError("invalid_request", `outcome must be "approve" or "deny"`))
		return
	}
	by, ok := p.authorize(w, r, in.ID)
	if !ok {
		return
	}
	m, err := p.a.DecideStage(r.Context(), in.ID, in.Outcome == "approve", by, in.Reason)
	var pe *pass.Error
	switch {
	case errors.Is(err, authority.ErrState), errors.As(err, &pe):
		writeJSON(w, http.StatusConflict, apiError("no_transition", "no stage move of this mission waits for a decision"))
		return
	case err != nil:
		p.apiFail(w, err)
		return
	}
	p.log.Info("admin API: stage decision", "mission_id", short(in.ID), "user", m.User.Email, "outcome", in.Outcome,
		"stage", m.AuthorityModel.Stage, "decided_by", by)
	writeJSON(w, http.StatusOK, pass.MissionResponse{Mission: *m})
}
