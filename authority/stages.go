package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// This file holds staged execution: a mission's plan of stages, each with
// its own scope and gate, of which only the current stage's scope is
// enforced. Moving forward is one step at a time and passes the target's
// gate; moving back only narrows and happens at once.

// pathMissionStage is the path of the stage endpoint, relative to the path
// of Config.BaseURL.
const pathMissionStage = "/missions/stage"

// Limits of stage transitions.
const (
	// defaultTransitionTTL is how long a forward move waits for a person
	// when Config.TransitionTTL is zero.
	defaultTransitionTTL = 10 * time.Minute
	// maxTransitionTTL bounds Config.TransitionTTL.
	maxTransitionTTL = 24 * time.Hour
)

// collapsedStage names the single stage of a collapsed plan, as the
// implicit stage of a mission without a plan.
const collapsedStage = "main"

// StageOp is what a StageMove does.
type StageOp int

// Stage operations. Each is decided inside the store's atomic section
// against the mission as stored, so two racing moves cannot both win.
const (
	// StageApply moves to To now: back to any earlier stage, or forward
	// to the next one when its gate has been passed.
	StageApply StageOp = iota + 1
	// StagePend records a forward move to the next stage as waiting for
	// a person until now + TTL.
	StagePend
	// StageApprove applies the pending move.
	StageApprove
	// StageDeny drops the pending move, recorded as denied.
	StageDeny
	// StageRefuse records that the gate refused a forward move to To
	// without leaving it pending.
	StageRefuse
)

// StageMove is a change of a staged mission's current stage, applied by
// MissionChange.Apply. Failures are wire errors (*pass.Error, compare with
// errors.Is against pass.Fail(code, "")): stale_version, stage_unknown,
// stage_not_next, transition_pending; ErrState when the mission is not
// active or, for StageApprove and StageDeny, nothing is pending.
type StageMove struct {
	Op StageOp
	// To is the target stage (unused by StageApprove and StageDeny).
	To string
	// ExpectedVersion, when not zero, must be the mission's version.
	ExpectedVersion int64
	// TTL is how long a StagePend waits for a person.
	TTL time.Duration
}

// Wire errors of stage moves, returned by MissionChange.Apply so every
// store reports them alike.
var (
	errStaleVersion      = pass.Fail(pass.CodeStaleVersion, "expected_version is not the mission's current version")
	errStageUnknown      = pass.Fail(pass.CodeStageUnknown, "the mission's plan has no such stage")
	errStageNotNext      = pass.Fail(pass.CodeStageNotNext, "a forward move goes to the next stage only")
	errTransitionPending = pass.Fail(pass.CodeTransitionPending, "another stage transition waits for a decision")
	errTransitionDenied  = pass.Fail(pass.CodeTransitionDenied, "the stage transition was refused")
)

// applyStage is MissionChange.Apply for a stage move: m is r's move, and
// r is active and within its deadlines.
func (c MissionChange) applyStage(r *Request, now time.Time) (HistoryRecord, error) {
	m := c.Stage
	if m.ExpectedVersion != 0 && m.ExpectedVersion != r.Version {
		return HistoryRecord{}, errStaleVersion
	}
	if p := r.PendingStage; p != nil && !now.Before(p.ExpiresAt) {
		r.PendingStage = nil // an undecided move lapsed; the stage stays
	}
	cur := stageIndex(r.Stages, r.Stage)
	if cur < 0 {
		return HistoryRecord{}, errStageUnknown
	}
	details := map[string]any{"from": r.Stage}
	if c.Reason != "" {
		details["reason"] = c.Reason
	}
	note := func(typ string) (HistoryRecord, error) {
		if r.HistoryCount >= maxNotedHistory {
			return HistoryRecord{}, ErrStoreFull
		}
		return r.Record(pass.HistoryEntry{Type: typ, By: c.By, Details: details}, now)
	}
	to := m.To
	switch m.Op {
	case StageApprove, StageDeny:
		if r.PendingStage == nil {
			return HistoryRecord{}, ErrState
		}
		to = r.PendingStage.To
		details["to"] = to
		if m.Op == StageDeny {
			r.PendingStage = nil
			return note("stage_denied")
		}
	case StageApply, StagePend, StageRefuse:
	default:
		return HistoryRecord{}, fmt.Errorf("authority: StageMove: unknown operation %d", m.Op)
	}
	next := stageIndex(r.Stages, to)
	details["to"] = to
	switch {
	case next < 0:
		return HistoryRecord{}, errStageUnknown
	case next == cur && m.Op != StageApprove:
		return HistoryRecord{}, errStageNotNext
	case next < cur && m.Op == StageApply:
		// Back: it only narrows, so it is never gated, and it ends any
		// forward move waiting from the old stage.
	case next != cur+1:
		return HistoryRecord{}, errStageNotNext
	case m.Op != StageApprove && r.PendingStage != nil:
		return HistoryRecord{}, errTransitionPending
	}
	switch m.Op {
	case StagePend:
		if m.TTL <= 0 {
			return HistoryRecord{}, fmt.Errorf("authority: StageMove: a pending move needs a TTL")
		}
		r.PendingStage = &pass.Pending{To: to, RequestedAt: now.UTC(), ExpiresAt: now.Add(m.TTL).UTC(), Reason: c.Reason}
		details["expires_at"] = r.PendingStage.ExpiresAt.Format(time.RFC3339)
		return note("stage_requested")
	case StageRefuse:
		return note("stage_denied")
	}
	if m.Op == StageApply && r.HistoryCount >= maxNotedHistory {
		// A Harness's own moves stop at the history bound like notes do:
		// each adds an entry and a SET per authorization, and back and
		// forth has no end otherwise. A person's decision still applies.
		return HistoryRecord{}, ErrStoreFull
	}
	r.PendingStage = nil
	r.Stage = to
	r.Scope = cloneScope(r.Stages[next].Scope)
	details["scope"] = scopeDetail(r.Scope)
	r.Version++
	return r.Record(pass.HistoryEntry{Type: "stage_changed", By: c.By, Details: details}, now)
}

// stageIndex returns the position of the stage named name, or -1.
func stageIndex(stages []pass.Stage, name string) int {
	return slices.IndexFunc(stages, func(s pass.Stage) bool { return s.Name == name })
}

// Ceiling returns the most the mission may hold: the union of its stages'
// scopes, or its current scope when it has no plan.
func (r *Request) Ceiling() pass.Scope {
	if len(r.Stages) == 0 {
		return cloneScope(r.Scope)
	}
	var out pass.Scope
	for _, st := range r.Stages {
		out = append(out, st.Scope...)
	}
	return out.Dedupe()
}

// startPlan fixes the approved plan of r, granted scope: every stage is
// narrowed to the grant and stages left empty are dropped, so an approver
// narrows a plan but never widens it. It returns the ceiling, the union of
// what is left, which becomes the grant; with nothing left the mission has
// no plan and keeps granted.
func (r *Request) startPlan(granted pass.Scope) pass.Scope {
	var plan []pass.Stage
	var ceiling pass.Scope
	for _, st := range r.Stages {
		s := st.Scope.Intersect(granted)
		if len(s) == 0 {
			continue
		}
		plan = append(plan, pass.Stage{Name: st.Name, Scope: s, Gate: st.Gate})
		ceiling = append(ceiling, s...)
	}
	r.Stages, r.Stage, r.PendingStage = plan, "", nil
	if len(plan) == 0 {
		r.Stages = nil
		return granted
	}
	r.Stage = plan[0].Name
	return ceiling.Dedupe()
}

// narrowPlan narrows every stage to scope (an operator's NarrowScope),
// dropping stages left empty except the current one, and returns the new
// current scope.
func (r *Request) narrowPlan(scope pass.Scope) pass.Scope {
	var plan []pass.Stage
	var current pass.Scope
	for _, st := range r.Stages {
		s := st.Scope.Intersect(scope)
		if st.Name == r.Stage {
			current = s
		} else if len(s) == 0 {
			continue
		}
		plan = append(plan, pass.Stage{Name: st.Name, Scope: s, Gate: st.Gate})
	}
	r.Stages = plan
	if current == nil {
		current = pass.Scope{}
	}
	return current
}

// gateRank orders gates; an unknown gate ranks as human.
func gateRank(g string) int {
	switch g {
	case pass.GateAuto:
		return 0
	case pass.GatePolicy:
		return 1
	}
	return 2
}

// gateFloor returns the lowest gate a stage adding scopes of the given
// effects may have: only reads may enter by themselves, a write needs at
// least policy, and anything that deletes, acts outside the Service,
// administers or is unclassified needs a person.
func gateFloor(effects []Effect) string {
	floor := pass.GateAuto
	for _, e := range effects {
		switch {
		case e.Compare(EffectRead) <= 0:
		case e.Compare(EffectWrite) == 0:
			if gateRank(floor) < gateRank(pass.GatePolicy) {
				floor = pass.GatePolicy
			}
		default:
			return pass.GateHuman
		}
	}
	return floor
}

// planFor chooses the stage plan of a new request: the Harness's plan when
// it sent one, else the proposed one (a compiler's), else none. Stages are
// narrowed to what the Service offers (stages left empty dropped), each
// gate is raised to the floor of the effects the stage adds over the one
// before it (with a warning, so an operator sees a plan that asked for
// less), and the plan is collapsed into one stage with the strictest gate
// when the Service does not advertise staged execution or the Harness
// cannot request transitions: the approver then sees the whole authority
// up front. It returns nil when there is no plan.
func (a *Authority) planFor(ctx context.Context, req *Request, requested, proposed []pass.Stage, serviceStages, harnessStages bool) []pass.Stage {
	source, bound := requested, req.AvailableScope
	if len(source) == 0 {
		// A proposed plan covers the task; the mission gets the part of
		// it a plain approval grants (the request's scope within the
		// proposal), so that stages beyond it do not gate the request.
		source = proposed
		if req.ProposedScope != nil {
			bound = bound.Intersect(req.ProposedScope)
		}
	}
	if len(source) == 0 {
		return nil
	}
	var plan []pass.Stage
	var before, seen pass.Scope
	for _, st := range source {
		s := st.Scope.Intersect(bound)
		if len(s) == 0 || st.Scope.HasWildcard() {
			continue
		}
		if len(source) == len(proposed) && len(requested) == 0 && len(plan) > 0 && s.SubsetOf(seen) {
			// A proposed stage left with nothing new once bounded by the
			// request would only add a gate to cross for nothing.
			continue
		}
		seen = append(seen, s...)
		var effects []Effect
		for _, v := range s {
			if !before.Allows(v) {
				effects = append(effects, a.effectOf(req, v))
			}
		}
		gate := st.Gate
		if gate == "" {
			gate = pass.GateAuto
		}
		if floor := gateFloor(effects); gateRank(gate) < gateRank(floor) {
			if st.Gate != "" {
				a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass stage gate raised to its effect floor",
					slog.String("mission_id", req.MissionID), slog.String("stage", st.Name),
					slog.String("declared", st.Gate), slog.String("gate", floor))
			}
			gate = floor
		}
		plan = append(plan, pass.Stage{Name: st.Name, Scope: s, Gate: gate})
		before = s
	}
	if len(plan) == 0 {
		return nil
	}
	if len(requested) == 0 && req.ProposedScope != nil && !req.ProposedScope.Intersect(req.AvailableScope).SubsetOf(seen) {
		// The request reaches beyond the proposed plan: a person decides
		// on the request itself, without a plan that would cut it short.
		return nil
	}
	if !serviceStages || !harnessStages {
		one := pass.Stage{Name: collapsedStage, Gate: pass.GateAuto}
		for _, st := range plan {
			one.Scope = append(one.Scope, st.Scope...)
			if gateRank(st.Gate) > gateRank(one.Gate) {
				one.Gate = st.Gate
			}
		}
		one.Scope = one.Scope.Dedupe()
		plan = []pass.Stage{one}
	}
	return plan
}

// effectOf classifies a scope of req for its gate by the Authority's
// configured rules (Config.Effects); a scope they do not classify is
// unknown, gated as the most dangerous.
func (a *Authority) effectOf(req *Request, scope string) Effect {
	if e, ok := req.Effects[scope]; ok {
		return e // the higher of the Service's declared effect and Config.Effects
	}
	return a.effects.Of(scope, "")
}

// serveMissionStage is POST {mission_stage}: the mission's Harness (or an
// ancestor's) asks to move to another stage. A back move applies at once;
// a forward move goes to the next stage only, through its gate: auto
// applies, policy asks the Approver (a refusal is 403, no answer leaves it
// to a person), human leaves it pending (202) until Authority.DecideStage
// or TransitionTTL.
func (a *Authority) serveMissionStage(w http.ResponseWriter, r *http.Request) {
	const event = "mission stage"
	logged := func(in *pass.MissionStageRequest) []slog.Attr {
		return []slog.Attr{slog.String("mission_id", in.MissionID), slog.String("to", in.To)}
	}
	in, m, signer, ok := harnessCall(a, w, r, event, a.base+pathMissionStage,
		func(in *pass.MissionStageRequest) string { return in.MissionID }, logged)
	if !ok {
		return
	}
	ctx := r.Context()
	attrs := logged(in)
	by := "harness:" + signer.HarnessID
	attrs = append(attrs, slog.String("harness", signer.HarnessID), slog.String("by_mission", signer.MissionID), slog.String("from", m.Stage))
	ancestors, err := a.ancestors(ctx, m)
	if err != nil {
		a.reject(w, event, err, attrs...)
		return
	}
	now := a.now()
	switch st := EffectiveMissionState(m, ancestors, now); {
	case st.Terminal():
		a.reject(w, event, pass.Fail(pass.CodeMissionTerminal, "the mission has ended"), attrs...)
		return
	case st != pass.MissionActive:
		a.reject(w, event, pass.Fail(pass.CodeMissionNotActive, "stage moves need an active mission"), attrs...)
		return
	}
	if m.HistoryCount >= maxNotedHistory {
		// The store would refuse the move: do not ask a policy first.
		a.reject(w, event, ErrStoreFull, attrs...)
		return
	}
	// The gate below is chosen from the mission as read here; pinning its
	// version makes the store refuse the move if anything (a concurrent
	// move, a narrowing) committed since, so a stage read as "not next"
	// can never be entered ungated once another move makes it next.
	if in.ExpectedVersion != 0 && in.ExpectedVersion != m.Version {
		a.reject(w, event, errStaleVersion, attrs...)
		return
	}
	move := &StageMove{Op: StageApply, To: in.To, ExpectedVersion: m.Version}
	cur, next := stageIndex(m.Stages, m.Stage), stageIndex(m.Stages, in.To)
	outcome := "applied"
	if cur >= 0 && next == cur+1 {
		// Only the next stage's gate is asked; anything else is refused by
		// the store without troubling a policy or a person.
		switch m.Stages[next].Gate {
		case pass.GateAuto:
		case pass.GatePolicy:
			move.Op, outcome = a.stagePolicy(ctx, m, m.Stages[next])
		default:
			move.Op, outcome = StagePend, "pending"
		}
	}
	if move.Op == StagePend {
		move.TTL = a.transitionTTL
	}
	_, err = a.store.TransitionMission(ctx, m.MissionID, MissionChange{From: []pass.MissionState{pass.MissionActive}, By: by,
		Reason: in.Reason, Stage: move}, now)
	if err == nil && move.Op == StageRefuse {
		err = errTransitionDenied
	}
	if err != nil {
		a.reject(w, event, a.stageError(ctx, m.MissionID, err), append(attrs, slog.String("outcome", outcome))...)
		return
	}
	a.answerStage(w, r, event, m.MissionID, move.Op == StagePend, append(attrs, slog.String("outcome", outcome)))
}

// answerStage answers a stage request with the Harness view: 200, or 202
// with a polling hint when a person must decide.
func (a *Authority) answerStage(w http.ResponseWriter, r *http.Request, event, missionID string, pending bool, attrs []slog.Attr) {
	ctx := r.Context()
	m, err := a.store.Request(ctx, missionID)
	if err != nil {
		a.reject(w, event, notFoundAs(err, errMissionUnknown), attrs...)
		return
	}
	v, err := a.harnessView(ctx, m)
	if err != nil {
		a.reject(w, event, err, attrs...)
		return
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+event, append(attrs, slog.String("stage", m.Stage), slog.Int64("version", m.Version))...)
	out := &pass.MissionStageResponse{Mission: v.Mission}
	status := http.StatusOK
	if pending {
		status, out.PollAfterMs = http.StatusAccepted, int(a.pollAfter/time.Millisecond)
	}
	httpx.WriteJSON(w, status, out)
}

// stagePolicy asks the Approver whether the mission may enter stage st: a
// copy of the mission's request offering exactly st's scope. Approve
// applies the move, Deny or Cancel refuses it, and anything else (Pending,
// an error, an approval of less than the stage) leaves it to a person.
func (a *Authority) stagePolicy(ctx context.Context, m *Request, st pass.Stage) (StageOp, string) {
	q := m.Clone()
	q.Status, q.Decision, q.State = pass.StatusPending, nil, pass.MissionPending
	q.AvailableScope, q.ProposedScope = cloneScope(st.Scope), cloneScope(st.Scope)
	d, err := a.approver.Decide(ctx, q)
	switch {
	case err != nil:
		a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass approver failed on a stage; left to a person",
			slog.String("mission_id", m.MissionID), slog.String("reason", err.Error()))
		return StagePend, "pending"
	case d.Outcome == Approve && (d.Scope == nil || st.Scope.SubsetOf(d.Scope)):
		if a.validateStage(ctx, m, st.Name, true, d.DecidedBy, d.Reason) != nil {
			return StagePend, "pending"
		}
		return StageApply, "applied"
	case d.Outcome == Deny || d.Outcome == Cancel:
		if a.validateStage(ctx, m, st.Name, false, d.DecidedBy, d.Reason) != nil {
			return StagePend, "pending"
		}
		return StageRefuse, "refused"
	}
	return StagePend, "pending"
}

// stageError maps a failed stage move to the wire.
func (a *Authority) stageError(ctx context.Context, missionID string, err error) error {
	switch {
	case errors.Is(err, ErrExpired):
		a.expire(ctx, missionID)
		return pass.Fail(pass.CodeMissionTerminal, "the mission has ended").WithCause(err)
	case errors.Is(err, ErrTerminal):
		return pass.Fail(pass.CodeMissionTerminal, "the mission has ended").WithCause(err)
	case errors.Is(err, ErrState):
		return pass.Fail(pass.CodeMissionNotActive, "stage moves need an active mission").WithCause(err)
	case errors.Is(err, ErrNotFound):
		return errMissionUnknown.WithCause(err)
	}
	return err
}

// DecideStage decides the stage move of the mission missionID that waits
// for a person: approve moves the mission to it, deny drops it (recorded
// as denied; the Harness sees it when it reads the mission). by names the
// person for the evidence. Errors: ErrNotFound, ErrState (not active, or
// nothing pending, including a move that lapsed), ErrTerminal, and the
// stage move's wire errors (the plan changed meanwhile).
func (a *Authority) DecideStage(ctx context.Context, missionID string, approve bool, by, reason string) (*pass.MissionRecord, error) {
	op := StageDeny
	if approve {
		op = StageApprove
	}
	if a.validateDec != nil {
		m, err := a.store.Request(ctx, missionID)
		if err != nil {
			return nil, err
		}
		if m.PendingStage != nil {
			if err := a.validateStage(ctx, m, m.PendingStage.To, approve, by, reason); err != nil {
				return nil, err
			}
		}
	}
	return a.change(ctx, "stage decision", missionID, MissionChange{From: []pass.MissionState{pass.MissionActive}, By: by,
		Reason: reason, Stage: &StageMove{Op: op}})
}

// stageModel adds r's plan to an authority model: the ceiling is the
// plan's union, and a move waiting for a person shows until it lapses.
// Before approval the plan asked for is shown (the approver sees it), with
// no current stage.
func stageModel(m *pass.AuthorityModel, r *Request, now time.Time) {
	if len(r.Stages) == 0 {
		return
	}
	m.Stages = cloneStages(r.Stages)
	if r.Decision == nil || r.Decision.Status != pass.StatusApproved {
		return
	}
	m.Ceiling, m.Stage = r.Ceiling(), r.Stage
	if p := r.PendingStage; p != nil && now.Before(p.ExpiresAt) && r.State == pass.MissionActive {
		c := *p
		m.PendingTransition = &c
	}
}
