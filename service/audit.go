package service

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// Audit events (the log message of each record).
const (
	eventResolve    = "agentpass resolve"
	eventScopes     = "agentpass available scopes"
	eventRedeem     = "agentpass redemption"
	eventInitialize = "agentpass initialization"
	eventRequest    = "agentpass request rejected"
	eventCheck      = "agentpass authorization check"
	eventClose      = "agentpass authorization close"
)

// audit collects the attributes of one audit record, so every action an
// agent took can be traced to the user, agent and task the Authority
// vouched for. It never holds a secret: no pass value, token, proof or
// cookie.
type audit struct {
	event           string
	endpoint        string
	user            string // validated user.email once known, else the request's
	agent           string
	task            string
	harness         string
	authority       string
	authorizationID string
	requestID       string
	// missionID and missionVersion name the delegation's mission and the
	// version last seen: the point in the Authority's hash-chained mission
	// history an auditor can look up.
	missionID      string
	missionVersion int64
	// parentMissionID names the parent mission of a sub-agent's delegation.
	parentMissionID string
	// historyHead is the mission history's head the Authority reported at
	// validation (redemption records only): logged so an auditor can show
	// the Authority's log was not rewritten before this point.
	historyHead string
}

func (a *audit) fromDelegation(d *DelegationRecord) {
	a.user, a.agent, a.task, a.harness = d.User, d.Agent, d.Task.ID, d.HarnessID
	a.authority, a.authorizationID = d.Authority, d.AuthorizationID
	a.missionID, a.missionVersion = d.MissionID, d.MissionVersion
	if len(d.Ancestors) > 0 {
		a.parentMissionID = d.Ancestors[0]
	}
}

func (a *audit) attrs(outcome string) []slog.Attr {
	attrs := make([]slog.Attr, 0, 12)
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add("endpoint", a.endpoint)
	add("user", a.user)
	add("agent", a.agent)
	add("task", a.task)
	add("harness", a.harness)
	add("authority", a.authority)
	add("authorization_id", a.authorizationID)
	add("request_id", a.requestID)
	add("mission_id", a.missionID)
	add("parent_mission_id", a.parentMissionID)
	add("history_head", a.historyHead)
	if a.missionVersion > 0 {
		attrs = append(attrs, slog.Int64("mission_version", a.missionVersion))
	}
	add("outcome", outcome)
	return attrs
}

// ok logs a success.
func (s *Service) auditOK(ctx context.Context, a *audit, extra ...slog.Attr) {
	if !s.cfg.Logger.Enabled(ctx, slog.LevelInfo) {
		return // no attributes built for a logger that drops them
	}
	s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, a.event, append(a.attrs("ok"), extra...)...)
}

// fail logs a rejection and answers it: the one place the Service writes
// an error, through wireError.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, a *audit, err error) {
	pe := wireError(err)
	telemetry.Annotate(r.Context(), a.user, a.agent, a.task, a.authority, a.authorizationID)
	s.auditReject(r.Context(), a, pe)
	httpx.WriteError(w, nil, pe)
}

// answers maps any error of a Service handler to what the peer sees (the
// one mapping of internal/httpx, with the Service's own sentinels).
var answers = httpx.Answers{Busy: []error{ErrStoreFull}, Self: "the Service",
	PeerCode: pass.CodeAuthorityUnavailable, Peer: "the Authority"}

func wireError(err error) *pass.Error { return answers.Wire(err) }

func (s *Service) auditReject(ctx context.Context, a *audit, err error) {
	attrs := a.attrs("rejected")
	level := slog.LevelWarn
	var pe *pass.Error
	if errors.As(err, &pe) {
		attrs = append(attrs, slog.Int("status", pe.Status), slog.String("code", string(pe.Code)))
		if pe.Status >= 500 {
			level = slog.LevelError
		}
	} else {
		level = slog.LevelError
	}
	attrs = append(attrs, slog.String("reason", err.Error()))
	s.cfg.Logger.LogAttrs(ctx, level, a.event, attrs...)
}

// requestID returns a caller-supplied request id for correlation, bounded
// and printable, or "".
func requestID(r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if len(id) > 128 || hasControl(id) {
		return ""
	}
	return id
}

const levelDebug = slog.LevelDebug
