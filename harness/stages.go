package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// ErrOutsideMission: no stage of the mission allows the scopes, so no stage
// move will; the task needs a new mission, approved by a person.
var ErrOutsideMission = errors.New("harness: scopes outside the mission")

// ErrNeedsTransition is Gate's answer for scopes a stage of the mission
// other than the current one allows: move there with RequestStage first.
type ErrNeedsTransition struct {
	// Stage is the nearest stage that allows every scope asked for.
	Stage string
}

func (e *ErrNeedsTransition) Error() string {
	return fmt.Sprintf("harness: the mission must move to stage %q first", e.Stage)
}

// errNotRead: Gate answers from the mission as last read, and it was not
// read yet.
var errNotRead = errors.New("harness: the mission was not read yet: call Refresh before Gate")

// Bounds of waiting for a person's decision on a stage move.
const (
	minStagePoll = time.Second
	maxStagePoll = time.Minute
)

// remember keeps the authority model of a record read from the Authority,
// for Gate.
func (m *Mission) remember(r *pass.MissionRecord) {
	model := r.AuthorityModel
	m.mu.Lock()
	m.model = &model
	m.mu.Unlock()
}

// Gate is the advisory check a tool wrapper calls before a tool that needs
// scopes runs: nil when the current stage allows them, an
// *ErrNeedsTransition naming the stage that would, or ErrOutsideMission.
// It answers from the mission as last read (Refresh, RequestStage), so it
// costs no round trip; the Service's middleware is the authoritative gate.
// A runtime that gets ErrNeedsTransition is expected to call RequestStage,
// never to look for another way to the resource.
func (m *Mission) Gate(scopes ...string) error {
	if m.Closed() {
		return ErrMissionClosed
	}
	m.mu.Lock()
	model := m.model
	m.mu.Unlock()
	switch {
	case model == nil:
		return errNotRead
	case model.Scope.AllowsAll(scopes...):
		return nil
	case len(model.Stages) == 0 || !model.Ceiling.AllowsAll(scopes...):
		return ErrOutsideMission
	}
	// The nearest later stage first (forward moves go one step at a time,
	// and each step is gated), then the nearest earlier one (a back move
	// is immediate).
	cur := 0
	for i, st := range model.Stages {
		if st.Name == model.Stage {
			cur = i
		}
	}
	for i := cur + 1; i < len(model.Stages); i++ {
		if model.Stages[i].Scope.AllowsAll(scopes...) {
			return &ErrNeedsTransition{Stage: model.Stages[i].Name}
		}
	}
	for i := cur - 1; i >= 0; i-- {
		if model.Stages[i].Scope.AllowsAll(scopes...) {
			return &ErrNeedsTransition{Stage: model.Stages[i].Name}
		}
	}
	return ErrOutsideMission
}

// RequestStage asks the Authority to move the mission to stage to, giving
// reason (at most 1024 bytes) to whoever decides. A move back, or forward
// through an automatic or policy gate, is applied at once; one a person
// must decide is waited for, reading the mission at the interval the
// Authority asks for, until it is applied, refused or lapses, or ctx ends.
// It returns the mission as it then stands. A refused or lapsed move is a
// *pass.PeerError with code transition_denied (it matches
// pass.ErrForbidden); a forward move that skips a stage is
// stage_not_next, and one while another waits transition_pending. Moving
// forward only one stage at a time, a runtime asks for each stage in turn.
func (m *Mission) RequestStage(ctx context.Context, to, reason string) (*pass.MissionRecord, error) {
	if m.stage == "" {
		return nil, fmt.Errorf("%w: the Authority does not advertise staged execution", ErrMissionUnsupported)
	}
	if m.Closed() {
		return nil, ErrMissionClosed
	}
	body := pass.MissionStageRequest{MissionID: m.id, To: to, Reason: reason}
	if err := body.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	var out pass.MissionStageResponse
	if err := m.call(ctx, m.stage, body, &out); err != nil {
		return nil, err
	}
	if out.Mission.ID != m.id {
		return nil, &ProtocolError{Peer: "authority", URL: m.stage, Reason: "mission record of another mission"}
	}
	m.remember(&out.Mission)
	rec, wait := &out.Mission, time.Duration(out.PollAfterMs)*time.Millisecond
	for {
		model := rec.AuthorityModel
		switch p := model.PendingTransition; {
		case model.Stage == to:
			m.c.log.LogAttrs(ctx, slog.LevelInfo, "agentpass mission stage", slog.String("mission_id", m.id),
				slog.String("stage", to), slog.String("outcome", "applied"), slog.Int64("version", rec.Version))
			return rec, nil
		case p == nil || p.To != to || !p.ExpiresAt.IsZero() && m.c.now().After(p.ExpiresAt.Add(maxStagePoll)):
			// Refused, or lapsed: an Authority still showing a move well
			// past its own deadline is not waited for.
			m.c.log.LogAttrs(ctx, slog.LevelInfo, "agentpass mission stage", slog.String("mission_id", m.id),
				slog.String("stage", to), slog.String("outcome", "refused"), slog.String("current", model.Stage))
			return rec, &pass.PeerError{Peer: pass.PeerAuthority, Origin: m.authority, Status: http.StatusForbidden,
				Code: pass.CodeTransitionDenied, Message: "the move to stage " + to + " was refused or lapsed"}
		}
		if err := m.c.sleep(ctx, min(max(wait, minStagePoll), maxStagePoll)); err != nil {
			return nil, err
		}
		var err error
		if rec, err = m.Refresh(ctx); err != nil {
			return nil, err
		}
	}
}
