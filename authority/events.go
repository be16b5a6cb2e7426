package authority

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/pass"
)

// Bounds and timings of event delivery.
const (
	// MaxOutboxPerService bounds the SETs queued for one Service. A newer
	// SET of a delegation replaces its older pending ones that neither end
	// nor suspend it; when the bound is still reached, a new SET of that
	// kind is refused (and logged), never another delegation's pending
	// one: the Service's next check catches what it said.
	MaxOutboxPerService = 10_000
	// OutboxRetention is how long an unacknowledged SET stays pollable.
	OutboxRetention = 24 * time.Hour
	// PushHorizon is how long a pushed SET is retried before it is given
	// up (the Service's next authorization check refuses anyway).
	PushHorizon = 15 * time.Minute
	// pushTimeout bounds one push.
	pushTimeout = 2 * time.Second
	// maxLongPoll bounds how long a poll waits for a SET.
	maxLongPoll = 30 * time.Second

	pushFirstRetry  = 100 * time.Millisecond
	pushMaxRetry    = 30 * time.Second
	pushPerService  = 4
	pushInFlight    = 64               // pushes in flight per transmitter, all Services together
	pushLease       = 30 * time.Second // a claim outlives a push and its timeout
	defaultPollSize = 100
)

// OutboxEvent is one signed SET waiting for its Service. Stores keep it in
// the transaction of the change that caused it, so a crash between the
// commit and the delivery loses nothing.
type OutboxEvent struct {
	// Seq is assigned by the store, rising with every event enqueued: the
	// delivery order within a subject.
	Seq int64
	// JTI is the SET's jti: a retry resends the same SET.
	JTI string
	// Service is the aud, the Service origin.
	Service string
	// Subject is the authorization id (the SET's sub_id).
	Subject string
	// Push is true when the Service takes pushes; otherwise it polls.
	Push bool
	// Receiver is the push endpoint, on the Service's origin.
	Receiver string
	// Terminal marks an event that ends the delegation: it supersedes every
	// older pending event of its subject.
	Terminal bool
	// Keep marks an event the per-Service bound never drops (a terminal
	// event or a suspension).
	Keep bool
	// SET is the compact signed token.
	SET       string
	CreatedAt time.Time
	// NextAt is when a push is next due, Attempts how many were made.
	NextAt   time.Time
	Attempts int
}

// MissionEvent describes one committed change of a mission that holds an
// authorization, for MissionChange.Events.
type MissionEvent struct {
	// Root is the mission the change was applied to, after it; Mission is
	// Root or one of its descendants, after the change.
	Root, Mission *Request
	// Change is the change applied to Root.
	Change MissionChange
	// Prior is Mission's stored state before the change.
	Prior pass.MissionState
	// Authorization is Mission's authorization after the change.
	Authorization *Authorization
	// Receiver is what the authorization's Service advertised.
	Receiver pass.ServiceEvents
	// Ancestors are a descendant's ancestors as the Store passed them to
	// MissionChange.Cascade (nil for Root): with Root they give the
	// descendant's effective scope after the change, which its SET
	// carries.
	Ancestors []*Request
}

// EventStore is the outbox of SETs that a Store implements to deliver
// mission changes to Services. MemoryStore and authoritypg implement it;
// with another Store the Authority sends no events (Services still learn
// of every change at their next authorization check).
type EventStore interface {
	// SetEventReceiver records how the Service at origin takes events;
	// nil forgets it. TransitionMission enqueues events only for Services
	// recorded here.
	SetEventReceiver(ctx context.Context, service string, r *pass.ServiceEvents) error

	// ClaimEvents leases, for owner until leaseUntil, at most limit push
	// events due at now, each the oldest of its subject with no other of
	// its subject leased, at most perService per Service (counting those
	// already leased). Claims hold across replicas sharing the store.
	ClaimEvents(ctx context.Context, owner string, now, leaseUntil time.Time, limit, perService int) ([]*OutboxEvent, error)

	// FinishEvent ends owner's lease of the event jti: a zero next
	// deletes it (delivered, refused, or given up); otherwise it is due
	// again at next, with one more attempt.
	FinishEvent(ctx context.Context, owner, jti string, next time.Time) error

	// PollEvents returns up to max poll events of service, oldest first,
	// and whether more wait. Events older than now - OutboxRetention are
	// never returned (and may be deleted).
	PollEvents(ctx context.Context, service string, max int, now time.Time) ([]*OutboxEvent, bool, error)

	// AckEvents deletes the listed events of service.
	AckEvents(ctx context.Context, service string, jtis []string) error

	// WaitEvents returns the store's event generation, which rises with
	// every enqueue, as soon as it is above after (at once when it
	// already is), or ctx's error. Callers read it (with after -1)
	// before looking for events, so none enqueued meanwhile is missed.
	WaitEvents(ctx context.Context, after int64) (int64, error)
}

// eventFor builds the outbox event of one mission change, or nil when the
// change concerns no SET (an expiry the Service enforces itself, a
// resumption the Service has no word for, a note).
func (a *Authority) eventFor(e MissionEvent) (*OutboxEvent, error) {
	m, az, rcv, c := e.Mission, e.Authorization, e.Receiver, e.Change
	if az == nil || m == nil || e.Root == nil {
		return nil, nil
	}
	descendant := m.MissionID != e.Root.MissionID
	state := m.State
	ev := secevent.Event{Timestamp: a.now().Unix(), InitiatingEntity: initiator(c.By)}
	keep, terminal := false, false
	switch {
	case state == pass.MissionExpired:
		return nil, nil // Services enforce authorization_expires_at themselves
	case state == pass.MissionCompleted:
		ev.Type, terminal, keep = secevent.MissionCompleted, true, true
		if !rcv.Accepts(secevent.MissionCompleted) {
			ev.Type = secevent.SessionRevoked
		}
	case state.Terminal():
		ev.Type, terminal, keep = secevent.SessionRevoked, true, true
	case c.To == pass.MissionSuspended:
		// A descendant keeps its stored state; it is held with its root.
		state = pass.MissionSuspended
		ev.Type, keep = secevent.MissionSuspended, true
		if !rcv.Accepts(secevent.MissionSuspended) {
			ev.Type, terminal = secevent.SessionRevoked, true
		}
	case c.To == pass.MissionActive && (e.Prior == pass.MissionSuspended || descendant && slices.Contains(c.From, pass.MissionSuspended)):
		if !rcv.Accepts(secevent.MissionResumed) {
			return nil, nil // the delegation was ended instead
		}
		ev.Type = secevent.MissionResumed
	case c.Stage != nil && !descendant:
		// A stage move may widen as well as narrow; only our own type says
		// which stage, so a receiver narrows at once and confirms a wider
		// stage by a check. A Service without it learns at its next check.
		if !rcv.Accepts(secevent.MissionStageChanged) {
			return nil, nil
		}
		ev.Type, ev.Scope = secevent.MissionStageChanged, strings.Join(m.Scope, " ")
	case descendant && (c.Stage != nil || c.Scope != nil && c.To == ""):
		// An ancestor's stage move or narrowing changed what the
		// descendant may do, not its own stage: the claims change carries
		// its effective scope, which a receiver applies at once when
		// narrower and confirms by a check when wider.
		ev.Type = secevent.TokenClaimsChange
		ev.Claims = &secevent.Claims{Scope: strings.Join(attenuate(m.Scope, asChanged(e.Ancestors, e.Root)), " ")}
	case c.Scope != nil && c.To == "":
		ev.Type = secevent.TokenClaimsChange
		ev.Claims = &secevent.Claims{Scope: strings.Join(m.Scope, " ")}
	default:
		return nil, nil
	}
	mission := &secevent.Mission{ID: m.MissionID, Version: m.Version, State: string(state), PriorState: string(e.Prior)}
	if ev.Type == secevent.MissionStageChanged {
		mission.Stage = m.Stage
	}
	if m.Ended != nil {
		mission.Cause = m.Ended.Cause
		if m.Ended.Reason != "" && c.By != "" && strings.HasPrefix(c.By, "human:") && !descendant {
			ev.ReasonAdmin = map[string]string{"en": m.Ended.Reason}
		}
	}
	ev.Mission = mission
	now := a.now()
	raw, jti, err := secevent.Sign(a.keys.Current(), secevent.SET{
		Issuer: a.id, Audience: az.Service, IssuedAt: now, Subject: az.ID, Event: ev,
		Txn: e.Root.MissionID + ":" + strconv.FormatInt(e.Root.HistoryCount, 10),
	})
	if err != nil {
		return nil, err
	}
	return &OutboxEvent{
		JTI: jti, Service: az.Service, Subject: az.ID, Push: rcv.DeliveryMethod == pass.DeliveryPush, Receiver: rcv.Receiver,
		Terminal: terminal, Keep: keep, SET: raw, CreatedAt: now, NextAt: now,
	}, nil
}

// initiator maps who acted to CAEP's initiating_entity.
func initiator(by string) string {
	switch {
	case strings.HasPrefix(by, "human:"):
		return secevent.InitiatorAdmin
	case strings.HasPrefix(by, "harness:"):
		return secevent.InitiatorUser
	case strings.HasPrefix(by, "rule:"), strings.HasPrefix(by, "policy:"):
		return secevent.InitiatorPolicy
	}
	return secevent.InitiatorSystem
}

// eventStore wraps the configured Store so that every transition, from
// any code path, carries the Authority's event builder.
type eventStore struct {
	Store
	build   func(MissionEvent) (*OutboxEvent, error)
	refused func(*OutboxEvent)
}

func (s eventStore) TransitionMission(ctx context.Context, missionID string, c MissionChange, now time.Time) (*Request, error) {
	if c.Events == nil {
		c.Events = s.build
	}
	if c.EventRefused == nil {
		c.EventRefused = s.refused
	}
	return s.Store.TransitionMission(ctx, missionID, c, now)
}

// eventRefused logs a SET the outbox bound refused, with the running
// count; never the SET itself.
func (a *Authority) eventRefused(ev *OutboxEvent) {
	n := a.tx.refused.Add(1)
	a.log.LogAttrs(context.Background(), slog.LevelWarn, "agentpass events: outbox full, SET not queued",
		slog.String("service", ev.Service), slog.String("subject", ev.Subject), slog.String("jti", ev.JTI), slog.Int64("refused_total", n))
}
