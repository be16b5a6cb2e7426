package authority

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/proofwire"
	"github.com/agentpass-go/agentpass/pass"
)

// This file serves the mission extension's endpoints: reading a mission
// record (by the redeeming Service or by the mission's Harness), completing
// a mission from its Harness, and a Service's reports of what it refused.

// Paths of the mission endpoints, relative to the path of Config.BaseURL.
const (
	pathMission         = "/missions/read"
	pathMissionComplete = "/missions/complete"
	pathMissionReport   = "/missions/report"
)

// ObservationAction is what Config.OnObservation asks the Authority to do
// after it recorded a Service's observation.
type ObservationAction int

// Observation actions. The zero value only records.
const (
	ObserveRecord ObservationAction = iota
	ObserveSuspend
	ObserveRevoke
)

// maxViewEvents bounds the history entries a Harness view carries over
// HTTP (the latest ones; head and count still commit to all), so the
// answer stays within the 64 KiB every peer reads.
const maxViewEvents = 64

// harnessView renders the Harness view of m for the wire.
func (a *Authority) harnessView(ctx context.Context, m *Request) (*pass.MissionResponse, error) {
	v, err := a.view(ctx, m, viewHarness, "", true)
	if err != nil {
		return nil, err
	}
	if n := len(v.History.Events); n > maxViewEvents {
		v.History.Events = v.History.Events[n-maxViewEvents:]
	}
	// Entries carry what Services reported, escaped on encoding: drop the
	// oldest until the answer fits what a peer reads (head and count
	// still commit to the whole history).
	resp := &pass.MissionResponse{Mission: *v}
	for len(resp.Mission.History.Events) > 0 {
		b, err := json.Marshal(resp)
		if err != nil {
			return nil, err
		}
		if len(b) <= maxViewBytes {
			break
		}
		resp.Mission.History.Events = resp.Mission.History.Events[1:]
	}
	return resp, nil
}

// maxViewBytes leaves room below the 64 KiB body bound.
const maxViewBytes = pass.MaxDocumentSize - 1024

// observationRule names the actor of changes OnObservation asks for in the
// history.
const observationRule = "rule:on-observation"

// errMissionUnknown answers every mission id the caller may not see, so
// unknown, foreign and wrong-key ids cannot be told apart.
var errMissionUnknown = pass.Fail(pass.CodeMissionUnknown, "unknown mission")

// serveMission is POST {mission}: the redeeming Service reads the Service
// view by authorization_id with its assertion, the mission's Harness (or an
// ancestor's) reads the Harness view by mission_id with a holder proof.
func (a *Authority) serveMission(w http.ResponseWriter, r *http.Request) {
	const event = "mission read"
	httpx.NoStore(w.Header())
	if !a.allowService(w, r, event) {
		return
	}
	var in pass.MissionReadRequest
	if err := httpx.ReadRequest(w, r, &in); err != nil {
		a.reject(w, event, err)
		return
	}
	ctx := r.Context()
	if in.MissionID != "" {
		if !a.allowHarness(w, r, event) {
			return
		}
		m, signer, err := a.holderProof(ctx, r, a.base+pathMission, in.MissionID)
		if err != nil {
			a.reject(w, event, err, slog.String("mission_id", in.MissionID))
			return
		}
		if !a.allowMission(w, r, event, m.MissionID) {
			return
		}
		v, err := a.harnessView(ctx, m)
		if err != nil {
			a.reject(w, event, err, slog.String("mission_id", in.MissionID))
			return
		}
		a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+event, slog.String("outcome", "ok"), slog.String("mission_id", m.MissionID),
			slog.String("harness", signer.HarnessID), slog.String("by_mission", signer.MissionID), slog.Int64("version", v.Mission.Version))
		httpx.WriteJSON(w, http.StatusOK, v)
		return
	}
	svc, az, err := a.serviceAuthorization(ctx, r, in.AuthorizationID)
	attrs := []slog.Attr{slog.String("service", svc), slog.String("authorization_id", in.AuthorizationID)}
	if err != nil {
		a.reject(w, event, err, attrs...)
		return
	}
	m, err := a.store.Request(ctx, az.MissionID)
	if err != nil {
		a.reject(w, event, notFoundAs(err, errMissionUnknown), attrs...)
		return
	}
	v, err := a.view(ctx, m, viewService, svc, false)
	if err != nil {
		a.reject(w, event, err, attrs...)
		return
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+event, append(attrs, slog.String("outcome", "ok"),
		slog.String("mission_id", m.MissionID), slog.Int64("version", v.Version))...)
	httpx.WriteJSON(w, http.StatusOK, &pass.MissionResponse{Mission: *v})
}

// serveMissionComplete is POST {mission_complete}: the mission's Harness
// (or an ancestor's) ends it. A live mission completes, and its
// descendants are revoked in the same step; a pending one can only be
// abandoned, which cancels its request. Completing a completed mission
// answers it again, unchanged.
func (a *Authority) serveMissionComplete(w http.ResponseWriter, r *http.Request) {
	const event = "mission complete"
	logged := func(in *pass.MissionCompleteRequest) []slog.Attr {
		return []slog.Attr{slog.String("mission_id", in.MissionID), slog.String("outcome_requested", in.Outcome)}
	}
	in, m, signer, ok := harnessCall(a, w, r, event, a.base+pathMissionComplete,
		func(in *pass.MissionCompleteRequest) string { return in.MissionID }, logged)
	if !ok {
		return
	}
	ctx := r.Context()
	attrs := logged(in)
	attrs = append(attrs, slog.String("harness", signer.HarnessID), slog.String("by_mission", signer.MissionID))
	now := a.now()
	by := "harness:" + signer.HarnessID
	c := MissionChange{From: liveMission, To: pass.MissionCompleted, Cause: pass.CauseHarness, By: by, Reason: in.Reason,
		Details: map[string]any{"outcome": in.Outcome}}
	if m.State == pass.MissionPending && in.Outcome == pass.OutcomeAbandoned {
		c = MissionChange{From: []pass.MissionState{pass.MissionPending}, To: pass.MissionRevoked, Cause: pass.CauseCanceled,
			By: by, Reason: in.Reason, Details: map[string]any{"outcome": in.Outcome},
			Decision: &Evidence{Status: pass.StatusCanceled, DecidedBy: by, DecidedAt: now, Reason: in.Reason}}
	}
	_, err := a.store.TransitionMission(ctx, m.MissionID, c, now)
	if errors.Is(err, ErrExpired) {
		a.expire(ctx, m.MissionID)
		err = ErrTerminal
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrTerminal):
		cur, gerr := a.store.Request(ctx, m.MissionID)
		if gerr != nil {
			a.reject(w, event, notFoundAs(gerr, errMissionUnknown), attrs...)
			return
		}
		if cur.State != pass.MissionCompleted {
			a.reject(w, event, pass.Fail(pass.CodeMissionTerminal, "the mission has ended"),
				append(attrs, slog.String("state", string(cur.State)))...)
			return
		}
		// Idempotent: the Harness may retry a completion whose answer it
		// lost, and gets the same record.
		m = cur
	case errors.Is(err, ErrState):
		a.reject(w, event, pass.Fail(pass.CodeMissionNotActive, "a pending mission can only be abandoned"), attrs...)
		return
	case errors.Is(err, ErrNotFound):
		a.reject(w, event, errMissionUnknown, attrs...)
		return
	default:
		a.reject(w, event, err, attrs...)
		return
	}
	m, err = a.store.Request(ctx, m.MissionID)
	if err != nil {
		a.reject(w, event, notFoundAs(err, errMissionUnknown), attrs...)
		return
	}
	v, err := a.harnessView(ctx, m)
	if err != nil {
		a.reject(w, event, err, attrs...)
		return
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+event, append(attrs, slog.String("outcome", "ok"),
		slog.String("state", string(v.Mission.State)), slog.Int64("version", v.Mission.Version), slog.String("reason", in.Reason))...)
	httpx.WriteJSON(w, http.StatusOK, v)
}

// serveMissionReport is POST {mission_report}: the redeeming Service
// reports what its middleware refused. Each observation becomes a history
// entry of the mission, and Config.OnObservation may suspend or revoke it.
// Reports about a mission that has ended are accepted and dropped.
func (a *Authority) serveMissionReport(w http.ResponseWriter, r *http.Request) {
	const event = "mission report"
	httpx.NoStore(w.Header())
	if !a.allowService(w, r, event) {
		return
	}
	var in pass.MissionReportRequest
	if err := httpx.ReadRequest(w, r, &in); err != nil {
		a.reject(w, event, err)
		return
	}
	ctx := r.Context()
	svc, az, err := a.serviceAuthorization(ctx, r, in.AuthorizationID)
	attrs := []slog.Attr{slog.String("service", svc), slog.String("authorization_id", in.AuthorizationID)}
	if err != nil {
		a.reject(w, event, err, attrs...)
		return
	}
	attrs = append(attrs, slog.String("mission_id", az.MissionID))
	recorded := 0
	for _, o := range in.Observations {
		ok, err := a.observe(ctx, az, svc, o)
		if err != nil {
			a.reject(w, event, err, append(attrs, slog.Int("recorded", recorded))...)
			return
		}
		if !ok {
			break
		}
		recorded++
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+event, append(attrs, slog.String("outcome", "ok"),
		slog.Int("observations", len(in.Observations)), slog.Int("recorded", recorded))...)
	w.WriteHeader(http.StatusNoContent)
}

// observe records one observation about az's mission and applies
// OnObservation's answer. It reports false when the mission takes no more
// observations (it ended, or its history is full).
func (a *Authority) observe(ctx context.Context, az *Authorization, svc string, o pass.Observation) (bool, error) {
	details := map[string]any{"authorization_id": az.ID, "kind": o.Kind, "count": o.Count,
		"first_at": o.FirstAt.UTC().Format(time.RFC3339), "last_at": o.LastAt.UTC().Format(time.RFC3339)}
	if o.Scope != "" {
		details["scope"] = o.Scope
	}
	if o.Stage != "" {
		details["stage"] = o.Stage
	}
	_, err := a.store.TransitionMission(ctx, az.MissionID, MissionChange{From: liveMission, Note: "observation",
		By: "service:" + svc, Service: svc, Details: details}, a.now())
	recorded := err == nil
	switch {
	case errors.Is(err, ErrExpired):
		a.expire(ctx, az.MissionID)
		return false, nil
	case errors.Is(err, ErrTerminal), errors.Is(err, ErrState), errors.Is(err, ErrNotFound):
		return false, nil
	case errors.Is(err, ErrStoreFull):
		// The history takes no more notes, but the policy must still see
		// the observation: a full history must not switch OnObservation
		// off for the rest of the mission's life. Its Suspend or Revoke is
		// a state change, which is always recorded.
	case err != nil:
		return false, err
	}
	if a.onObservation == nil {
		return recorded, nil
	}
	// The record without its history entries, as OnObservation documents:
	// reading the whole history per observation would make a report cost
	// grow with the square of the history's length.
	r, err := a.store.Request(ctx, az.MissionID)
	if err != nil {
		return false, err
	}
	rec, err := a.view(ctx, r, viewOperator, "", false)
	if err != nil {
		return false, err
	}
	var op string
	var c MissionChange
	switch a.onObservation(ctx, rec, o) {
	case ObserveSuspend:
		op, c = "suspend", MissionChange{From: []pass.MissionState{pass.MissionActive}, To: pass.MissionSuspended, By: observationRule,
			Reason: "suspended after a Service's observation"}
	case ObserveRevoke:
		op, c = "revoke", MissionChange{From: liveMission, To: pass.MissionRevoked, Cause: pass.CauseOperator, By: observationRule,
			Reason: "revoked after a Service's observation"}
	default:
		return recorded, nil
	}
	if _, err := a.change(ctx, op, az.MissionID, c); err != nil && !errors.Is(err, ErrState) && !errors.Is(err, ErrTerminal) {
		return false, err
	}
	return recorded, nil
}

// serviceAuthorization authenticates a Service call about an authorization
// and returns the Service origin and the authorization, which must be one
// the Service redeemed: any other id answers like an unknown one. The
// assertion is spent only then.
func (a *Authority) serviceAuthorization(ctx context.Context, r *http.Request, id string) (string, *Authorization, error) {
	if httpx.BearerToken(r) == "" {
		return "", nil, errNoAssertion
	}
	svc, tok, err := a.authenticate(ctx, r)
	if err != nil {
		return svc, nil, err
	}
	az, err := a.store.Authorization(ctx, id)
	if err == nil && az.Service != svc {
		err = ErrNotFound
	}
	if err != nil {
		return svc, nil, notFoundAs(err, errMissionUnknown)
	}
	if err := a.spend(ctx, tok); err != nil {
		return svc, nil, err
	}
	return svc, az, nil
}

// harnessCall is the prologue every mission call a Harness alone makes
// shares: no caching, the Harness rate limits, the body read into a new T,
// the holder proof for the mission the body names (signed for endpoint),
// and that mission's own budget, charged only after the proof so that
// knowing a mission id cannot spend it. On a refusal it has answered (logged
// with attrs) and ok is false.
func harnessCall[T any, PT interface {
	*T
	pass.Document
}](a *Authority, w http.ResponseWriter, r *http.Request, event, endpoint string,
	mission func(PT) string, attrs func(PT) []slog.Attr) (in PT, m, signer *Request, ok bool) {
	httpx.NoStore(w.Header())
	if !a.allowHarness(w, r, event) {
		return nil, nil, nil, false
	}
	in = PT(new(T))
	if err := httpx.ReadRequest(w, r, in); err != nil {
		a.reject(w, event, err)
		return nil, nil, nil, false
	}
	m, signer, err := a.holderProof(r.Context(), r, endpoint, mission(in))
	if err != nil {
		a.reject(w, event, err, attrs(in)...)
		return nil, nil, nil, false
	}
	if !a.allowMission(w, r, event, m.MissionID) {
		return nil, nil, nil, false
	}
	return in, m, signer, true
}

// holderProof authenticates a Harness call about missionID: the proof in
// pass.ProofHeader must be bound to this endpoint and this mission id (aph), be
// fresh and unused, and be signed by the holder key of the mission or of
// one of its ancestors, with iss that mission's harness.id. It returns the
// mission and the mission whose key signed. A proof that fails on its own
// (times, audience, binding, replay) is 401; an unknown mission, or one
// the key does not hold, is the same 404.
func (a *Authority) holderProof(ctx context.Context, r *http.Request, endpoint, missionID string) (*Request, *Request, error) {
	proof := r.Header.Get(pass.ProofHeader)
	if proof == "" {
		return nil, nil, pass.Fail(pass.CodeProofRequired, "mission calls need a proof of the holder key in the "+pass.ProofHeader+" header")
	}
	req := dpop.ProofRequest{Method: http.MethodPost, URL: endpoint, AgentPass: missionID, RequireBinding: true}
	p, err := a.proofs.Precheck(ctx, proof, req)
	if err != nil {
		return nil, nil, proofError(err)
	}
	m, err := a.store.Request(ctx, missionID)
	if err != nil {
		return nil, nil, notFoundAs(err, errMissionUnknown)
	}
	ancestors, err := a.ancestors(ctx, m)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range append([]*Request{m}, ancestors...) {
		if c.Cnf == nil || c.HarnessID == "" {
			continue
		}
		req.HarnessID = c.HarnessID
		_, err := a.proofs.Complete(ctx, p, c.Cnf, req)
		switch {
		case err == nil:
			return m, c, nil
		case errors.Is(err, dpop.ErrReplay) || !errors.Is(err, dpop.ErrInvalidProof):
			return nil, nil, proofError(err)
		}
	}
	return nil, nil, errMissionUnknown.WithCause(errors.New("no holder key of the mission or its ancestors signed the proof"))
}

// proofError maps a holder proof failure to the wire: 401 with the failed
// check from the fixed set of reasons, or 503 when the replay cache failed.
func proofError(err error) error {
	if !errors.Is(err, dpop.ErrInvalidProof) {
		return err
	}
	return proofwire.Fail(pass.CodeProofRequired, err).WithStatus(http.StatusUnauthorized).WithCause(err)
}

// notFoundAs answers ErrNotFound as wire, and passes other errors on.
func notFoundAs(err error, wire *pass.Error) error {
	if errors.Is(err, ErrNotFound) {
		return wire.WithCause(err)
	}
	return err
}

// serviceSpeaksMission reports whether the Service svc advertises the
// mission extension in its configuration (cached by discovery since the
// assertion was verified).
func (a *Authority) serviceSpeaksMission(ctx context.Context, svc string) bool {
	info, err := a.disc.DiscoverService(ctx, svc)
	return err == nil && info.Configuration.Extensions.Has(pass.ExtMission)
}

// writeSuspended answers an authorization check of a suspended mission to
// its redeeming Service that speaks the mission extension: 404, so a plain
// reading still invalidates, with the mission's state and version next to
// the error, so that Service can hold the delegation instead.
func (a *Authority) writeSuspended(w http.ResponseWriter, m *Request) {
	body := pass.Fail(pass.CodeMissionSuspended, "the mission is suspended").Body()
	body.Mission = &pass.MissionInfo{ID: m.MissionID, State: pass.MissionSuspended, Version: m.Version}
	httpx.WriteJSON(w, http.StatusNotFound, &body)
}
