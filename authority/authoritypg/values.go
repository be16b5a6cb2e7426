package authoritypg

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// Conversions between Go values and columns. Zero times, nil scopes, nil
// JSON and empty optional strings are stored as NULL and read back as the
// same zero values, so a record round-trips unchanged.

func ts(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

func tm(v pgtype.Timestamptz) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return v.Time.UTC()
}

func scopeArg(s pass.Scope) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

func scopeOf(s []string) pass.Scope {
	if s == nil {
		return nil
	}
	return pass.Scope(s)
}

// jsonArg passes raw JSON as the bytes of a json column (which keeps them
// exactly, unlike jsonb); nil or empty is NULL.
func jsonArg(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

func cnfOf(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	return json.RawMessage(b)
}

func textArg(s string) pgtype.Text {
	return pgtype.Text{String: s, Valid: s != ""}
}

func tierOf(s string) dpop.Tier { return dpop.Tier(s) }

// stagePlan is the stage_plan column: a mission's plan, current stage and
// waiting move.
type stagePlan struct {
	Stages  []pass.Stage  `json:"stages"`
	Stage   string        `json:"stage,omitempty"`
	Pending *pass.Pending `json:"pending,omitempty"`
}

func stagePlanArg(r *authority.Request) (pgtype.Text, error) {
	if len(r.Stages) == 0 {
		return pgtype.Text{}, nil
	}
	b, err := json.Marshal(stagePlan{Stages: r.Stages, Stage: r.Stage, Pending: r.PendingStage})
	if err != nil {
		return pgtype.Text{}, fmt.Errorf("authoritypg: stage plan: %w", err)
	}
	return pgtype.Text{String: string(b), Valid: true}, nil
}

func scanStagePlan(t pgtype.Text, r *authority.Request) error {
	if !t.Valid {
		return nil
	}
	var p stagePlan
	if err := json.Unmarshal([]byte(t.String), &p); err != nil {
		return fmt.Errorf("authoritypg: stage plan: %w", err)
	}
	r.Stages, r.Stage, r.PendingStage = p.Stages, p.Stage, p.Pending
	return nil
}

// scopePlan is the scope_plan column: the parts of a request's scope
// compilation that do not change after it is stored.
type scopePlan struct {
	Proposal      *authority.Proposal         `json:"proposal,omitempty"`
	CompileFailed bool                        `json:"compile_failed,omitempty"`
	Decision      string                      `json:"decision,omitempty"`
	Effects       map[string]authority.Effect `json:"effects,omitempty"`
}

// scopePlanOf encodes r's plan, or "" when it has none.
func scopePlanOf(r *authority.Request) (string, error) {
	if r.Proposal == nil && !r.CompileFailed && r.ScopeDecision == "" && r.Effects == nil {
		return "", nil
	}
	b, err := json.Marshal(scopePlan{Proposal: r.Proposal, CompileFailed: r.CompileFailed, Decision: r.ScopeDecision, Effects: r.Effects})
	if err != nil {
		return "", fmt.Errorf("authoritypg: encoding the scope plan: %w", err)
	}
	return string(b), nil
}

// readScopePlan decodes the scope_plan column into r.
func readScopePlan(s string, r *authority.Request) error {
	if s == "" {
		return nil
	}
	var p scopePlan
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return fmt.Errorf("authoritypg: decoding the scope plan of %s: %w", r.MissionID, err)
	}
	r.Proposal, r.CompileFailed, r.ScopeDecision, r.Effects = p.Proposal, p.CompileFailed, p.Decision, p.Effects
	return nil
}
