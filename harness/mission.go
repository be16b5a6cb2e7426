package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// ErrMissionClosed: the mission was completed or abandoned through its
// handle, so its tokens are not used again, even while the Authority has
// not yet been told.
var ErrMissionClosed = errors.New("harness: mission closed")

// ErrMissionUnsupported: the Authority does not advertise the mission
// extension, or did not name the grant's mission.
var ErrMissionUnsupported = errors.New("harness: the Authority does not support missions")

// Completion retries: the first waits completeRetryBase, each next one
// twice as long up to completeRetryMax, and a completion is given up after
// maxCompleteAttempts (the mission still ends at its expiry). At most
// maxPendingCompletions wait at once.
const (
	completeRetryBase     = time.Second
	completeRetryMax      = time.Minute
	maxCompleteAttempts   = 20
	maxPendingCompletions = 1024
	completeTimeout       = 30 * time.Second
)

// missionState is shared by a Grant, its Mission handle and the tokens
// redeemed from it: once closed, none of them is used again.
type missionState struct {
	closed atomic.Bool
}

// Mission is the handle of the mission behind a Grant: what the Authority
// governs (lifecycle, history), read with Refresh and ended with Complete
// or Abandon. Get it with [Client.Mission]. It is safe for concurrent use.
type Mission struct {
	c         *Client
	id        string
	authority string
	harnessID string
	key       *dpop.Key
	read      string
	complete  string
	state     *missionState
	grant     *Grant // the mission's grant, whose Service its children share
	stage     string // the mission_stage endpoint, "" when not advertised

	mu    sync.Mutex
	model *pass.AuthorityModel // as last read, nil before
}

// Mission returns the handle of g's mission. It needs an Authority that
// advertises the mission extension and named the mission in its status
// answers; ErrMissionUnsupported otherwise.
func (c *Client) Mission(g *Grant) (*Mission, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	if g == nil || g.AuthorityConfiguration == nil || g.MissionID == "" || g.Key == nil {
		return nil, ErrMissionUnsupported
	}
	m, ok := c.missionOf(g)
	if !ok {
		return nil, ErrMissionUnsupported
	}
	return m, nil
}

func (c *Client) missionOf(g *Grant) (*Mission, bool) {
	x := g.AuthorityConfiguration.Extensions
	read, complete := x.Endpoint(pass.ExtMission, "mission"), x.Endpoint(pass.ExtMission, "mission_complete")
	if read == "" || complete == "" || g.MissionID == "" || g.Key == nil {
		return nil, false
	}
	return &Mission{c: c, id: g.MissionID, authority: g.Authority, harnessID: g.HarnessID, key: g.Key,
		read: read, complete: complete, state: g.missionState(), grant: g, stage: x.Endpoint(pass.ExtStages, "mission_stage")}, true
}

// ID returns the mission id: a non-secret handle, safe to log.
func (m *Mission) ID() string { return m.id }

// Closed reports whether the mission was completed or abandoned through
// this handle (or another handle of the same grant).
func (m *Mission) Closed() bool { return m.state.closed.Load() }

// String describes the handle.
func (m *Mission) String() string { return fmt.Sprintf("Mission{%s at %s}", m.id, m.authority) }

// Refresh reads the mission record (the Harness's view) from the
// Authority.
func (m *Mission) Refresh(ctx context.Context) (*pass.MissionRecord, error) {
	var out pass.MissionResponse
	if err := m.call(ctx, m.read, pass.MissionReadRequest{MissionID: m.id}, &out); err != nil {
		return nil, err
	}
	if out.Mission.ID != m.id {
		return nil, &ProtocolError{Peer: "authority", URL: m.read, Reason: "mission record of another mission"}
	}
	m.remember(&out.Mission)
	return &out.Mission, nil
}

// Complete ends the mission: outcome is pass.OutcomeSucceeded,
// OutcomeFailed or OutcomeAbandoned, reason at most 1024 bytes. The handle
// is closed before anything is sent, so the grant's tokens are refused
// (ErrMissionClosed) from now on, whatever the answer. If the Authority
// cannot be reached or answers 5xx or 429, Complete returns the error and
// the completion is retried with backoff by [Client.Run]; the mission ends
// at its expiry at the latest. Completing a completed mission returns it
// unchanged. A pending mission can only be abandoned.
func (m *Mission) Complete(ctx context.Context, outcome, reason string) (*pass.MissionRecord, error) {
	body := pass.MissionCompleteRequest{MissionID: m.id, Outcome: outcome, Reason: reason}
	if err := body.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	m.state.closed.Store(true)
	var out pass.MissionResponse
	err := m.call(ctx, m.complete, body, &out)
	if err != nil {
		if retryable(err) {
			m.c.completions.add(m, body)
		}
		m.c.log.LogAttrs(ctx, slog.LevelWarn, "agentpass mission complete", slog.String("mission_id", m.id),
			slog.String("outcome", "failed"), slog.Bool("retrying", retryable(err)), slog.String("error", err.Error()))
		return nil, err
	}
	m.c.log.LogAttrs(ctx, slog.LevelInfo, "agentpass mission complete", slog.String("mission_id", m.id),
		slog.String("outcome", "ok"), slog.String("state", string(out.Mission.State)), slog.Int64("version", out.Mission.Version))
	return &out.Mission, nil
}

// Abandon is Complete with pass.OutcomeAbandoned: the agent gives the task
// up. It is the only way to end a mission that is still pending.
func (m *Mission) Abandon(ctx context.Context, reason string) (*pass.MissionRecord, error) {
	return m.Complete(ctx, pass.OutcomeAbandoned, reason)
}

// call posts body to endpoint with a fresh holder proof bound to it and
// to the mission id.
func (m *Mission) call(ctx context.Context, endpoint string, body any, out pass.Document) error {
	proof, err := m.key.HarnessProof(dpop.ProofParams{HarnessID: m.harnessID, Audience: m.authority, Method: http.MethodPost,
		URL: endpoint, AgentPass: m.id, TTL: defaultTaskAttestationTTL, Now: m.c.now()})
	if err != nil {
		return fmt.Errorf("harness: mission proof: %w", err)
	}
	_, err = httpx.Do(ctx, m.c.http, httpx.Call{Peer: pass.PeerAuthority, URL: endpoint, Body: body,
		Header: http.Header{pass.ProofHeader: {proof}}}, out)
	if err != nil {
		return fmt.Errorf("harness: mission %s at %s: %w", m.id, m.authority, err)
	}
	return nil
}

// retryable reports whether a failed call may succeed later: no answer, a
// 5xx or a 429.
func retryable(err error) bool {
	var ue *pass.UnreachableError
	var pe *pass.PeerError
	switch {
	case errors.As(err, &ue):
		return true
	case errors.As(err, &pe):
		return pe.Status >= 500 || pe.Status == http.StatusTooManyRequests
	}
	return false
}

// completionQueue holds the completions to retry, at most
// maxPendingCompletions, keyed by mission id.
type completionQueue struct {
	mu      sync.Mutex
	pending map[string]*pendingCompletion
	wake    chan struct{}
}

type pendingCompletion struct {
	m        *Mission
	body     pass.MissionCompleteRequest
	attempts int
	due      time.Time
}

func (q *completionQueue) add(m *Mission, body pass.MissionCompleteRequest) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending == nil {
		q.pending = map[string]*pendingCompletion{}
	}
	if _, ok := q.pending[m.id]; !ok && len(q.pending) >= maxPendingCompletions {
		m.c.log.Warn("agentpass mission complete not queued: too many pending", "mission_id", m.id)
		return
	}
	q.pending[m.id] = &pendingCompletion{m: m, body: body, attempts: 1, due: m.c.now().Add(completeRetryBase)}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pendingCompletions returns how many completions wait for Run.
func (c *Client) pendingCompletions() int {
	c.completions.mu.Lock()
	defer c.completions.mu.Unlock()
	return len(c.completions.pending)
}

// Run does the Client's background work until ctx is done, then returns
// ctx's error: it retries, with exponential backoff, the mission
// completions that could not reach the Authority (see Mission.Complete),
// up to 20 attempts each.
//
// The Client starts no goroutine of its own; start Run once per process:
//
//	go func() { _ = client.Run(ctx) }()
//
// Pending completions live in memory only: after a restart the Harness's
// tokens are gone anyway, and the missions end at their expiry.
func (c *Client) Run(ctx context.Context) error {
	if err := c.ready(); err != nil {
		return err
	}
	for {
		wait := c.retryCompletions(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-c.completions.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// retryCompletions makes one attempt for every due completion and returns
// how long until the next one is due.
func (c *Client) retryCompletions(ctx context.Context) time.Duration {
	q := &c.completions
	now := c.now()
	q.mu.Lock()
	var due []*pendingCompletion
	next := completeRetryMax
	for _, p := range q.pending {
		if d := p.due.Sub(now); d > 0 {
			next = min(next, d)
			continue
		}
		due = append(due, p)
	}
	q.mu.Unlock()
	for _, p := range due {
		if ctx.Err() != nil {
			return 0
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), completeTimeout)
		var out pass.MissionResponse
		err := p.m.call(cctx, p.m.complete, p.body, &out)
		cancel()
		q.mu.Lock()
		switch {
		case err == nil || !retryable(err) || p.attempts+1 >= maxCompleteAttempts:
			delete(q.pending, p.m.id)
			c.log.LogAttrs(ctx, slog.LevelInfo, "agentpass mission complete retried", slog.String("mission_id", p.m.id),
				slog.Int("attempts", p.attempts+1), slog.Bool("ok", err == nil))
		default:
			p.attempts++
			d := completeRetryBase << min(p.attempts-1, 6)
			d = min(d, completeRetryMax)
			d = d/2 + time.Duration(c.jitter()*float64(d/2))
			p.due = c.now().Add(d)
			next = min(next, d)
		}
		q.mu.Unlock()
	}
	return next
}
