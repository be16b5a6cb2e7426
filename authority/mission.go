package authority

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/internal/missionlog"
	"github.com/agentpass-go/agentpass/pass"
)

// ErrTerminal: the mission has ended (completed, revoked or expired); a
// terminal state never changes.
var ErrTerminal = errors.New("authority: mission has ended")

// maxMissionDepth bounds walks of the delegation graph, so a corrupt store
// with a cycle cannot loop forever.
const maxMissionDepth = 32

// HistoryRecord is one stored entry of a mission's hash-chained history:
// Body is the canonical JSON (RFC 8785) of the entry without its hash,
// exactly the bytes Hash was computed over. Stores keep Body as bytes or
// text, never as a JSON type that a database may re-normalise.
type HistoryRecord struct {
	Seq  int64
	Body []byte
	Hash string
}

// MissionListOptions filter and page Store.Missions.
type MissionListOptions struct {
	// User, when set, keeps missions of this user e-mail
	// (case-insensitive).
	User string
	// Service, when set, keeps missions for this Service origin.
	Service string
	// States, when not empty, keeps missions whose stored state is one of
	// them.
	States []pass.MissionState
	// Parent, when set, keeps the missions delegated from this mission.
	Parent string
	// After, when set, starts the page after this mission in
	// (CreatedAt, MissionID) order.
	After *MissionCursor
	// Limit bounds the page; zero means 100, at most 1000.
	Limit int
}

// MissionCursor is a position in the (CreatedAt, MissionID) order of
// missions.
type MissionCursor struct {
	CreatedAt time.Time
	MissionID string
}

// EffectiveLimit returns the page size: Limit, or 100 when zero, capped at
// 1000.
func (o MissionListOptions) EffectiveLimit() int { return ListOptions{Limit: o.Limit}.EffectiveLimit() }

// matches reports whether r passes the filters of o (not the cursor).
// Store implementations may use it.
func (o MissionListOptions) matches(r *Request) bool {
	return (o.User == "" || strings.EqualFold(o.User, r.User)) && (o.Service == "" || o.Service == r.Service) &&
		(len(o.States) == 0 || slices.Contains(o.States, r.State)) && (o.Parent == "" || o.Parent == r.ParentMissionID)
}

// MissionChange is one conditional change of a mission, applied by
// Store.TransitionMission under one lock or transaction together with its
// history entry.
type MissionChange struct {
	// From lists the stored states the change applies to. Required,
	// except for an expiry (To expired), which applies to any state that
	// has not ended once a deadline has passed.
	From []pass.MissionState
	// To is the new state; empty keeps it (a scope narrowing).
	To pass.MissionState
	// Cause is ended.cause when To is terminal; an expiry's cause is the
	// deadline that passed.
	Cause string
	// By names who acts ("human:…", "rule:…", "service:…", "harness:…",
	// "system"); Reason is free text. Both go to the history and, at the
	// end, to ended.
	By     string
	Reason string
	// Decision records the decision when leaving pending (approved with
	// To active, denied or canceled with To revoked). Required then.
	Decision *Evidence
	// Scope, when not nil, is the new scope: a subset of the current one
	// (ErrScopeWiden otherwise).
	Scope pass.Scope
	// Service, when set, must be the mission's Service (ErrNotFound
	// otherwise), so a Service can only act on its own delegations.
	Service string
	// Details are extra members of the history entry's details.
	Details map[string]any
	// Note, when set with no To and no Scope, only appends a history entry
	// of this type (an observation): it changes neither the state nor the
	// version, which order what affects enforcement. A mission whose
	// history holds 2,000 entries or more refuses notes with
	// ErrStoreFull, so reports cannot grow a record without bound.
	Note string
	// Events, when set, builds the SET to queue about one mission the
	// change affects. A Store that implements EventStore calls it inside
	// the atomic section of TransitionMission, for the root and every
	// descendant whose version moved and whose authorization's Service
	// has a recorded pass.ServiceEvents, and stores what it returns (nil:
	// nothing) in the same step, so no committed change goes untold. The
	// Authority sets it on every transition.
	Events func(MissionEvent) (*OutboxEvent, error)
	// EventRefused, when set, is told of each event built by Events that
	// the per-Service outbox bound refused, once the change is stored
	// (the Service learns of it at its next check). It must not call the
	// Store. The Authority sets it to log and count.
	EventRefused func(*OutboxEvent)
	// Stage, when set, moves the current stage of an active mission (see
	// StageMove); From must then hold active only.
	Stage *StageMove
}

// maxNotedHistory is the history length from which a mission takes no
// more notes (observations) and no more stage moves of its Harness;
// changes of state or scope by operators are always recorded.
const maxNotedHistory = 2000

// Apply checks c against r at now, applies it in place, bumps the version
// and returns the history record of the change. Errors, in this order:
// ErrNotFound (another Service), ErrTerminal, ErrExpired (a deadline has
// passed: commit the expiry instead), ErrState (From does not hold the
// state, or an expiry before any deadline), ErrScopeWiden. Store
// implementations call it inside their atomic section.
func (c MissionChange) Apply(r *Request, now time.Time) (HistoryRecord, error) {
	if c.Service != "" && r.Service != c.Service {
		return HistoryRecord{}, ErrNotFound
	}
	if r.State.Terminal() {
		return HistoryRecord{}, ErrTerminal
	}
	cause, due := r.dueExpiry(now)
	from := r.State
	switch {
	case c.To == pass.MissionExpired:
		if !due {
			return HistoryRecord{}, ErrState
		}
		c.Cause = cause
	case due:
		return HistoryRecord{}, ErrExpired
	case !slices.Contains(c.From, from):
		return HistoryRecord{}, ErrState
	}
	if c.Scope != nil && !c.Scope.SubsetOf(r.Ceiling()) {
		return HistoryRecord{}, ErrScopeWiden
	}
	if c.Stage != nil {
		return c.applyStage(r, now)
	}
	if c.Note != "" && c.To == "" && c.Scope == nil && c.Decision == nil {
		if r.HistoryCount >= maxNotedHistory {
			return HistoryRecord{}, ErrStoreFull
		}
		details := maps.Clone(c.Details)
		if details == nil {
			details = map[string]any{}
		}
		if c.Reason != "" {
			details["reason"] = c.Reason
		}
		return r.Record(pass.HistoryEntry{Type: c.Note, By: c.By, Details: details}, now)
	}
	leaving := from == pass.MissionPending && c.To != pass.MissionExpired && c.To != ""
	if leaving != (c.Decision != nil) || c.Decision != nil && (c.Decision.Status == pass.StatusApproved) != (c.To == pass.MissionActive) {
		return HistoryRecord{}, fmt.Errorf("authority: MissionChange: a decision goes with leaving pending (approved to active, otherwise revoked)")
	}
	if c.To == "" && c.Scope == nil {
		return HistoryRecord{}, fmt.Errorf("authority: MissionChange: no change")
	}
	details := maps.Clone(c.Details)
	if details == nil {
		details = map[string]any{}
	}
	typ := string(c.To)
	if c.Decision != nil {
		d := c.Decision.Clone()
		r.Status, r.Decision = d.Status, &d
		typ = string(d.Status)
		if d.Status == pass.StatusApproved {
			r.ActivatedAt = now
			if len(r.Stages) > 0 {
				// The approved plan bounds the grant: its union is the
				// ceiling, and only the first stage is held at first.
				d.Scope = r.startPlan(d.Scope)
				details["stage"] = r.Stage
			}
			r.Scope = cloneScope(d.Scope)
			if len(r.Stages) > 0 {
				r.Scope = cloneScope(r.Stages[0].Scope)
			}
			details["scope"] = scopeDetail(d.Scope)
			details["expires_at"] = d.AuthorizationExpiresAt.UTC().Format(time.RFC3339)
			if d.ScopeDecision != "" {
				details["scope_basis"] = d.ScopeDecision
			}
		}
		if d.DisclosureSHA256 != "" {
			details["disclosure_sha256"] = d.DisclosureSHA256
		}
	}
	if from == pass.MissionPending && c.To == pass.MissionExpired {
		r.Status = pass.StatusExpired
	}
	if c.To == pass.MissionSuspended || c.Scope != nil {
		// A suspension or a narrowing cancels a move waiting for a person:
		// it was asked for under what no longer holds.
		r.PendingStage = nil
	}
	if c.Scope != nil && len(r.Stages) > 0 {
		r.Scope = r.narrowPlan(c.Scope)
		details["scope"] = scopeDetail(c.Scope)
		if c.To == "" {
			typ = "scope_narrowed"
		}
	} else if c.Scope != nil {
		r.Scope = cloneScope(c.Scope)
		details["scope"] = scopeDetail(c.Scope)
		if c.To == "" {
			typ = "scope_narrowed"
		}
	}
	switch c.To {
	case "":
	case pass.MissionActive:
		if from == pass.MissionSuspended {
			typ = "resumed"
		}
		r.State = c.To
	default:
		r.State = c.To
	}
	if r.State.Terminal() {
		r.Ended = &pass.MissionEnd{At: now.UTC(), By: c.By, Cause: c.Cause, Reason: c.Reason}
		details["cause"] = c.Cause
	}
	if c.Reason != "" {
		details["reason"] = c.Reason
	}
	r.Version++
	return r.Record(pass.HistoryEntry{Type: typ, By: c.By, Details: details}, now)
}

// Cascade applies the effect of the change c, already applied to root, to
// its descendant d: a mission that ended ends its descendants (revoked with
// cause cascade, or expired when their own deadline has passed), a
// suspension or resumption of root bumps the descendants' version so
// observers see it, and a narrowing or stage move of root bumps the
// version of each descendant whose effective scope (its own scope within
// the current scope of every ancestor) it changes, so that Services hear
// of it at once. A stage move leaves the descendant's own scope alone: a
// later forward move gives back what it took, never more than the
// descendant's grant. It reports whether d changed, with the history record
// to append.
//
// ancestors are d's ancestors, parent first up to the top of its tree, as
// stored before the change (root as it was): Cascade reads them only for a
// narrowing or a stage move, and then refuses a chain that does not reach
// root. Store implementations call it, inside the same atomic section, for
// every descendant of root, and pass the same ancestors to MissionEvent.
func (c MissionChange) Cascade(root, d *Request, ancestors []*Request, now time.Time) (HistoryRecord, bool, error) {
	if d.State.Terminal() {
		return HistoryRecord{}, false, nil
	}
	details := map[string]any{"ancestor": root.MissionID}
	var typ string
	switch {
	case root.State.Terminal():
		cause, due := d.dueExpiry(now)
		typ = string(pass.MissionRevoked)
		if due {
			typ = string(pass.MissionExpired)
		} else {
			cause = pass.CauseCascade
		}
		if d.State == pass.MissionPending && !due {
			d.Status = pass.StatusCanceled
			d.Decision = &Evidence{Status: pass.StatusCanceled, DecidedBy: c.By, DecidedAt: now, Reason: "an ancestor mission ended"}
		} else if d.State == pass.MissionPending {
			d.Status = pass.StatusExpired
		}
		d.State = pass.MissionState(typ)
		d.Ended = &pass.MissionEnd{At: now.UTC(), By: c.By, Cause: cause, Reason: "an ancestor mission ended"}
		details["cause"] = cause
	case c.To == pass.MissionSuspended:
		typ = "suspended"
	case c.To == pass.MissionActive && slices.Contains(c.From, pass.MissionSuspended):
		typ = "resumed"
	case c.Scope != nil, c.Stage != nil:
		if d.State == pass.MissionPending {
			// Nothing is granted yet; its approval is bounded by the
			// parent as it stands then.
			return HistoryRecord{}, false, nil
		}
		if !slices.ContainsFunc(ancestors, func(a *Request) bool { return a.MissionID == root.MissionID }) {
			return HistoryRecord{}, false, fmt.Errorf("authority: Cascade: the ancestors of %s do not reach %s", d.MissionID, root.MissionID)
		}
		before := attenuate(d.Scope, ancestors)
		own := d.Scope
		if c.Scope != nil {
			// An operator's narrowing takes from the grant for good; the
			// ancestor's current stage bounds d only while it lasts.
			own = d.Scope.Intersect(c.Scope)
		}
		after := attenuate(own, asChanged(ancestors, root))
		if sameScope(own, d.Scope) && sameScope(before, after) {
			return HistoryRecord{}, false, nil
		}
		if c.Scope != nil {
			d.Scope = own
			typ = "scope_narrowed"
			details["scope"] = scopeDetail(own)
		} else {
			typ = "stage_changed"
			details["ancestor_stage"] = root.Stage
		}
		details["effective_scope"] = scopeDetail(after)
	default:
		return HistoryRecord{}, false, nil
	}
	d.Version++
	rec, err := d.Record(pass.HistoryEntry{Type: typ, By: c.By, Details: details}, now)
	return rec, err == nil, err
}

// asChanged returns the ancestors with root, after the change, in place
// of its stored self.
func asChanged(ancestors []*Request, root *Request) []*Request {
	out := slices.Clone(ancestors)
	for i, a := range out {
		if a.MissionID == root.MissionID {
			out[i] = root
		}
	}
	return out
}

func scopeDetail(s pass.Scope) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone([]string(s))
}

// Record appends an entry at the mission's current version to r's history
// (filling seq, at, version, prev and hash) and returns what to store.
func (r *Request) Record(e pass.HistoryEntry, now time.Time) (HistoryRecord, error) {
	e.Seq, e.At, e.Version = r.HistoryCount+1, now, r.Version
	if e.By == "" {
		e.By = "system"
	}
	body, err := missionlog.Seal(&e, r.HistoryHead)
	if err != nil {
		return HistoryRecord{}, fmt.Errorf("authority: history entry: %w", err)
	}
	r.HistoryHead, r.HistoryCount = e.Hash, e.Seq
	return HistoryRecord{Seq: e.Seq, Body: body, Hash: e.Hash}, nil
}

// StartMission opens the mission of a new request: state and version from
// its status (pending is version 1; a request decided at once was pending
// first, so it starts at version 2), and the history records of its
// creation and decision. Store implementations call it in CreateRequest
// and store the records with the request.
func (r *Request) StartMission() ([]HistoryRecord, error) {
	if !strings.HasPrefix(r.MissionID, pass.MissionIDPrefix) || len(r.MissionID) > maxIDLength {
		return nil, fmt.Errorf("authority: CreateRequest: mission id must start with %s", pass.MissionIDPrefix)
	}
	if r.IDHash == "" {
		return nil, fmt.Errorf("authority: CreateRequest: empty request id hash")
	}
	r.State, r.Version, r.HistoryHead, r.HistoryCount, r.Ended = pass.MissionPending, 1, "", 0, nil
	details := map[string]any{"service": r.Service, "task_id": r.TaskID, "type": string(r.Type), "available": scopeDetail(r.AvailableScope)}
	if r.ParentMissionID != "" {
		details["parent"] = r.ParentMissionID
	}
	if r.RequestedScope != nil {
		details["requested"] = scopeDetail(r.RequestedScope)
	}
	first, err := r.Record(pass.HistoryEntry{Type: "requested", By: "harness:" + r.HarnessID, Details: details}, r.CreatedAt)
	if err != nil {
		return nil, err
	}
	out := []HistoryRecord{first}
	if r.Proposal != nil || r.CompileFailed {
		rec, err := r.Record(pass.HistoryEntry{Type: "proposed", By: "system", Details: proposedDetails(r)}, r.CreatedAt)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	if r.Status == pass.StatusPending {
		return out, nil
	}
	d := r.Decision
	if d == nil {
		return nil, fmt.Errorf("authority: CreateRequest: status %q without a decision", r.Status)
	}
	c := MissionChange{From: []pass.MissionState{pass.MissionPending}, To: pass.MissionRevoked, By: d.DecidedBy, Reason: d.Reason, Decision: d}
	switch d.Status {
	case pass.StatusApproved:
		c.To = pass.MissionActive
	case pass.StatusDenied:
		c.Cause = pass.CauseDenied
	case pass.StatusCanceled:
		c.Cause = pass.CauseCanceled
	default:
		return nil, fmt.Errorf("authority: CreateRequest: status %q is not a decision", d.Status)
	}
	// The decision was taken at creation: judge deadlines at DecidedAt.
	rec, err := c.Apply(r, d.DecidedAt)
	if err != nil {
		return nil, err
	}
	return append(out, rec), nil
}

// dueExpiry reports whether a deadline of the (not ended) mission has
// passed at now, and which: the request TTL while pending, the
// delegation's end, or a pass that expired unredeemed.
func (r *Request) dueExpiry(now time.Time) (cause string, due bool) {
	switch r.State {
	case pass.MissionPending:
		if !now.Before(r.ExpiresAt) {
			return pass.CauseRequestExpired, true
		}
	case pass.MissionActive, pass.MissionSuspended:
		if r.Decision == nil {
			return "", false
		}
		if !now.Before(r.Decision.AuthorizationExpiresAt) {
			return pass.CauseClock, true
		}
		if r.ConsumedAt.IsZero() && !now.Before(r.Decision.PassExpiresAt) {
			return pass.CausePassExpired, true
		}
	}
	return "", false
}

// missionStateAt returns the mission's own state at now: a mission past a
// deadline is expired even before the expiry is committed.
func (r *Request) missionStateAt(now time.Time) pass.MissionState {
	if _, due := r.dueExpiry(now); due {
		return pass.MissionExpired
	}
	return r.State
}

// EffectiveMissionState returns the state every surface reports for r at
// now, given its ancestors (parent first): an ended ancestor makes it
// revoked (the cascade may not be committed yet), a suspended one
// suspended, and its own expiry wins over both.
func EffectiveMissionState(r *Request, ancestors []*Request, now time.Time) pass.MissionState {
	own := r.missionStateAt(now)
	if own.Terminal() || own == pass.MissionPending {
		return own
	}
	state := own
	for _, a := range ancestors {
		switch a.missionStateAt(now) {
		case pass.MissionCompleted, pass.MissionRevoked, pass.MissionExpired:
			return pass.MissionRevoked
		case pass.MissionSuspended:
			state = pass.MissionSuspended
		}
	}
	return state
}

// SyncAuthorization makes a live authorization of r follow the mission's
// state and scope after a change by whom and why, and reports whether it
// changed. Store implementations call it for the authorizations of every
// mission TransitionMission changes.
func (r *Request) SyncAuthorization(a *Authorization, by, reason string, now time.Time) bool {
	if a.State != pass.DelegationActive && a.State != pass.DelegationSuspended {
		return false
	}
	to := pass.DelegationState(r.State)
	if r.State == pass.MissionPending {
		return false
	}
	changed := a.State != to || !slices.Equal(a.Scope, r.Scope)
	if !changed {
		return false
	}
	a.State, a.Scope, a.UpdatedAt = to, cloneScope(r.Scope), now
	a.StateBy, a.StateReason = by, reason
	if r.Ended != nil && to != pass.DelegationExpired {
		a.ClosedAt = now
	}
	return true
}

// CheckParent reports whether r may be stored as a child of parent at now,
// given parent's ancestors (its parent first) and the number of its live
// children (stored state pending, active or suspended). The parent must be
// active with no suspended or ended ancestor (ErrState), have fewer live
// children than its approval allows (ErrTooManyChildren), and hold at
// least what r is granted: r's scope within parent's current scope and
// r's delegation ending no later than parent's (ErrScopeWiden). Store
// implementations call it in CreateChild, inside the atomic section that
// inserts r, so a parent narrowed, revoked or filled up meanwhile is seen.
func (r *Request) CheckParent(parent *Request, ancestors []*Request, liveChildren int, now time.Time) error {
	switch {
	case r.ParentMissionID != parent.MissionID:
		return fmt.Errorf("authority: CheckParent: %s is not the parent of %s", parent.MissionID, r.MissionID)
	case parent.Decision == nil:
		return fmt.Errorf("authority: CheckParent: a child is created under an approved parent")
	case r.Status == pass.StatusPending && r.Decision == nil:
		// Left to a person: what it asks for is bounded now, and again
		// by the approval.
	case r.Decision == nil || r.Decision.Status != pass.StatusApproved:
		return fmt.Errorf("authority: CheckParent: a child is created approved or pending")
	}
	asked := r.ProposedScope
	if r.Decision != nil {
		asked = r.Decision.Scope
	}
	switch {
	case EffectiveMissionState(parent, ancestors, now) != pass.MissionActive:
		return ErrState
	case liveChildren >= parent.Decision.MaxChildren:
		return ErrTooManyChildren
	case !asked.SubsetOf(parent.Scope) || asked.HasWildcard(),
		r.Decision != nil && r.Decision.AuthorizationExpiresAt.After(parent.Decision.AuthorizationExpiresAt):
		return ErrScopeWiden
	}
	return nil
}

// liveChild reports whether r counts against its parent's child slots:
// its stored state has not ended.
func (r *Request) liveChild() bool { return !r.State.Terminal() }

// proposedDetails are the details of a mission's "proposed" history entry:
// the proposal's digest and outcome, so the chain commits to the basis of
// the scope without repeating the reasons.
func proposedDetails(r *Request) map[string]any {
	p := r.Proposal
	if p == nil || r.CompileFailed {
		return map[string]any{"outcome": pass.ProposalNone, "compiler_failed": r.CompileFailed}
	}
	d := map[string]any{
		"outcome": pass.ProposalProposed, "compiler": p.Compiler, "compiler_version": p.Version,
		"input_sha256": p.InputSHA256, "scope": scopeDetail(p.Names()), "excluded": int64(len(p.Excluded) + p.Omitted),
	}
	if r.ScopeDecision != "" {
		d["decision"] = r.ScopeDecision
	}
	return d
}
