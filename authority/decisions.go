package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/agentpass-go/agentpass/pass"
)

// ErrDecisionRefused: Config.ValidateDecision refused a decision; the
// request or stage move stays pending. The error wraps the validator's.
var ErrDecisionRefused = errors.New("authority: decision refused by ValidateDecision")

// validateDecision asks Config.ValidateDecision about d on r. Pending is
// no decision and always passes.
func (a *Authority) validateDecision(ctx context.Context, r *Request, d Decision) error {
	if a.validateDec == nil || d.Outcome == Pending {
		return nil
	}
	d.Scope = cloneScope(d.Scope)
	if err := a.validateDec(ctx, r.Clone(), d); err != nil {
		a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass decision refused by validation", append(requestAttrs(r),
			slog.String("outcome", d.Outcome.String()), slog.String("decided_by", d.DecidedBy), slog.String("reason", err.Error()))...)
		return fmt.Errorf("%w: %w", ErrDecisionRefused, err)
	}
	return nil
}

// validateStage asks Config.ValidateDecision about a stage move of m to
// stage to (approve or refuse).
func (a *Authority) validateStage(ctx context.Context, m *Request, to string, approve bool, by, reason string) error {
	if a.validateDec == nil {
		return nil
	}
	q := m.Clone()
	if q.PendingStage == nil || q.PendingStage.To != to {
		q.PendingStage = &pass.Pending{To: to}
	}
	d := Decision{Outcome: Deny, DecidedBy: by, Reason: reason}
	if approve {
		d.Outcome = Approve
	}
	if i := slices.IndexFunc(m.Stages, func(s pass.Stage) bool { return s.Name == to }); i >= 0 {
		d.Scope = cloneScope(m.Stages[i].Scope)
	}
	return a.validateDecision(ctx, q, d)
}

// requestAttrs are the log attributes naming a request in full: the
// mission id, the full request id hash (the request id itself is a
// polling secret), the task and who it is for, so an audit can join log
// lines to the history and the export.
func requestAttrs(r *Request) []slog.Attr {
	return []slog.Attr{
		slog.String("mission_id", r.MissionID), slog.String("request_id_hash", r.IDHash),
		slog.String("task", r.TaskID), slog.String("user", r.User), slog.String("service", r.Service),
	}
}
