package authority

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// Store errors. Every Store implementation returns errors that match one of
// these with errors.Is; the Authority maps them to wire statuses (404, 409,
// 410, 403) in one place.
var (
	// ErrNotFound: no such request, pass or authorization, or an
	// authorization that belongs to another Service (which must not learn
	// that it exists).
	ErrNotFound = errors.New("authority: not found")
	// ErrConflict: a record with the same id exists.
	ErrConflict = errors.New("authority: record already exists")
	// ErrNotPending: a decision on a request that is no longer pending;
	// terminal states never change.
	ErrNotPending = errors.New("authority: request is not pending")
	// ErrExpired: the request, the pass or the authorization has expired.
	// It is [pass.ErrExpired], so one errors.Is test serves every package.
	ErrExpired = pass.ErrExpired
	// ErrConsumed: the pass was already consumed.
	ErrConsumed = errors.New("authority: agentpass already consumed")
	// ErrWrongAudience: the Service presenting the pass is not the one it
	// was issued for. The pass is not consumed, so a wrong Service cannot
	// burn it.
	ErrWrongAudience = errors.New("authority: agentpass issued for another service")
	// ErrState: the authorization's state does not allow the change.
	ErrState = errors.New("authority: authorization state does not allow this change")
	// ErrScopeWiden: a scope change that is not a narrowing.
	ErrScopeWiden = errors.New("authority: scope can only be narrowed")
	// ErrStoreFull: the store refuses new records (a bound was reached).
	ErrStoreFull = errors.New("authority: store full")
	// ErrTooManyChildren: the parent mission has as many live children
	// as its approval allows.
	ErrTooManyChildren = errors.New("authority: too many live child missions")
)

// Store keeps issuance requests with their missions, passes (as hashes),
// authorizations and mission histories.
//
// Every state transition is ONE conditional operation, so that several
// Authority replicas sharing a store (for example PostgreSQL, where each
// method is one UPDATE ... WHERE ... RETURNING or one short transaction)
// never double-consume a pass or change a terminal state. Implementations
// must be safe for concurrent use, must return copies (callers may modify
// what they get), must compare times only with the now they are given, and
// must pass the conformance suite authoritytest.TestStore.
type Store interface {
	// CreateRequest stores a new request and opens its mission (see
	// Request.StartMission, which it calls and whose history records it
	// stores in the same step), pending or already decided, with its pass
	// hash when approved. A request with the same mission id or request id
	// hash gives ErrConflict. On success r carries the mission's state,
	// version and history head.
	CreateRequest(ctx context.Context, r *Request) error

	// CreateChild stores r, an approved child of the mission
	// r.ParentMissionID, like CreateRequest, after Request.CheckParent
	// accepted it against the parent and its ancestors as they are in the
	// same lock or transaction, serialised with the parent's transitions:
	// a concurrent revocation either fails the creation or cascades over
	// the new child, and two creations racing for the last child slot
	// cannot both win. Errors: ErrNotFound (no such parent), those of
	// CheckParent, and those of CreateRequest.
	CreateChild(ctx context.Context, r *Request, now time.Time) error

	// Request returns the request whose mission has the given id, or
	// ErrNotFound.
	Request(ctx context.Context, missionID string) (*Request, error)

	// RequestByIDHash returns the request whose request id has the given
	// secret.Hash, or ErrNotFound. Only the issuance status endpoint,
	// which holds the request id, looks requests up this way.
	RequestByIDHash(ctx context.Context, idHash string) (*Request, error)

	// PendingRequests lists requests that are pending and unexpired at
	// opts.Now, oldest first.
	PendingRequests(ctx context.Context, opts ListOptions) ([]*Request, error)

	// Missions lists requests (missions) in (CreatedAt, MissionID) order,
	// starting after opts.After, filtered by opts.
	Missions(ctx context.Context, opts MissionListOptions) ([]*Request, error)

	// TransitionMission applies c to the mission with the given id in one
	// atomic step: c.Apply decides and changes the record, its history
	// record is appended, the mission's authorizations follow its state
	// and scope (Request.SyncAuthorization), and c.Cascade is applied to
	// every descendant (ParentMissionID), given its ancestors as stored
	// before the change, each with its own history record. Errors are
	// those of MissionChange.Apply, and ErrNotFound.
	TransitionMission(ctx context.Context, missionID string, c MissionChange, now time.Time) (*Request, error)

	// History returns the mission's stored history records in seq order
	// (ErrNotFound for an unknown mission).
	History(ctx context.Context, missionID string) ([]HistoryRecord, error)

	// RotatePass replaces the pass hash of an approved request whose pass
	// is unconsumed and unexpired at now; the previous pass stops working.
	// Errors: ErrNotFound, ErrNotPending (the request is not approved),
	// ErrConsumed, ErrExpired.
	RotatePass(ctx context.Context, missionID, passHash string, now time.Time) (*Request, error)

	// ConsumePass atomically looks up the pass by hash, checks that the
	// request's Service is audience, that the pass is unconsumed and
	// unexpired at now, and that its mission is active with no suspended
	// or ended ancestor (MissionBlocked), marks it consumed, creates the
	// authorization (see Request.Authorize) with the given id and appends
	// the mission's "redeemed" history record (Request.Record). The
	// mission check must still hold when the consumption commits: made
	// under the same lock, or by a conditional write that takes effect
	// only if the mission and its ancestors are unchanged since read.
	// Errors, in this order: ErrNotFound (also for a mission that is not
	// active), ErrWrongAudience (nothing changes), ErrConsumed,
	// ErrExpired. A call for a pass already consumed under the
	// same authorizationID returns that authorization (in its current
	// state) instead of ErrConsumed: a caller that lost the answer with its
	// connection retries with the same id and learns that it won. The
	// Consumption also carries the mission and its ancestors as the
	// consumption saw them, so the Authority answers without reading them
	// again.
	ConsumePass(ctx context.Context, passHash, audience, authorizationID string, now time.Time) (*Consumption, error)

	// Authorization returns the authorization with the given id, whatever
	// its state, or ErrNotFound.
	Authorization(ctx context.Context, id string) (*Authorization, error)

	// Authorizations lists authorizations that are active or suspended and
	// unexpired at opts.Now, newest first.
	Authorizations(ctx context.Context, opts ListOptions) ([]*Authorization, error)
}

// Consumption is what [Store.ConsumePass] returns: the authorization, and
// the mission and ancestors as the consumption checked them, so the
// validation answer needs no second read that could see a later state.
type Consumption struct {
	// Authorization is the authorization created (or, for a retry, found).
	Authorization *Authorization
	// Mission is the pass's request after the consumption.
	Mission *Request
	// Ancestors are the mission's ancestors, parent first, at most 32;
	// nil for a root mission. For a retry they stop before the first one
	// that no longer exists (it ended and was pruned).
	Ancestors []*Request
}

// ListOptions filter the listings of a Store.
type ListOptions struct {
	// Now is the time against which expiry is judged. Required.
	Now time.Time
	// User, when set, keeps records of this user e-mail
	// (case-insensitive).
	User string
	// Service, when set, keeps records for this Service origin.
	Service string
	// Limit bounds the result; zero means 100, at most 1000.
	Limit int
}

// EffectiveLimit returns the number of records a listing with o returns
// at most: Limit, or 100 when zero, capped at 1000. Store implementations
// use it so every store pages alike.
func (o ListOptions) EffectiveLimit() int {
	switch {
	case o.Limit <= 0:
		return 100
	case o.Limit > 1000:
		return 1000
	}
	return o.Limit
}

// Request is an issuance request and everything the Authority learned and
// decided about it.
type Request struct {
	// MissionID is the id of the request's mission (pass.MissionIDPrefix
	// and 128 random bits): the non-secret handle operators, approval
	// links and logs use.
	MissionID string
	// IDHash is secret.Hash of the request id. The request id itself is the
	// {id} of the status URL and the polling secret of unbound passes, so
	// only its hash is kept.
	IDHash string
	// Status is the stored v0.1 status. A pending request past ExpiresAt
	// is expired: use StatusAt. It stays approved once approved, whatever
	// happens to the mission later.
	Status    pass.Status
	CreatedAt time.Time
	// ExpiresAt is when a pending request expires (Config.RequestTTL).
	ExpiresAt time.Time

	Type pass.PassType
	// Service is the Service origin (serialised), the pass's audience.
	Service string
	// User is user.email as requested.
	User string
	// HarnessID is harness.id as requested (self-asserted).
	HarnessID string
	// Cnf is harness.cnf.jwk, nil without holder binding.
	Cnf json.RawMessage
	// HardenedBinding is true when the Harness listed the holder-binding
	// extension in harness.extensions: its approved status is released only
	// to a holder proof, and its pass is redeemable only with a proof
	// carrying htm, htu and aph.
	HardenedBinding bool
	// AgentID is the agent identity the Authority vouches for: the
	// attested sub, the registered name, or else harness.id.
	AgentID string
	// Tier is the trust tier reached (§3.1.4).
	Tier dpop.Tier
	// AttestationIssuer is the attester of a TierAttested harness.
	AttestationIssuer string

	TaskID          string
	TaskDescription string
	// TaskAttested is true only when a task attestation verified.
	TaskAttested bool
	// DestinationURL is intent.destination_url (browser sessions only),
	// same-origin with Service.
	DestinationURL string

	// AvailableScope is what the Service's available_scopes endpoint
	// returned.
	AvailableScope pass.Scope
	// ProposedScope is a scope an Approver suggested while leaving the
	// request pending; a human approval without a scope grants it.
	ProposedScope pass.Scope
	// ProposedBy names who proposed it (a rule name, or
	// "compiler:<id>@<version>").
	ProposedBy string
	// RequestedScope is the scope the Harness asked for (the issuance
	// request's scope member); nil when it asked for none.
	RequestedScope pass.Scope
	// Proposal is the sanitized proposal of Config.Compiler; nil when
	// there is none (no compiler, no template matched, or CompileFailed).
	Proposal *Proposal
	// CompileFailed is true when the compiler failed or timed out: only a
	// person may then decide.
	CompileFailed bool
	// ScopeDecision is how ProposedScope was derived from the request and
	// the proposal (pass.ScopeAsRequested, ...); empty without either.
	ScopeDecision string
	// Effects holds the effect of each available scope: the higher of the
	// Service's declared effect and Config.Effects. Nil when the Authority
	// does not classify effects.
	Effects map[string]Effect
	// ParentMissionID is the mission this one was delegated from, if any:
	// ending the parent ends this mission, and a suspended parent makes it
	// answer as suspended.
	ParentMissionID string

	// Decision is the evidence of the terminal decision, nil while pending.
	Decision *Evidence

	// PassHash is secret.Hash of the current pass value (approved only).
	PassHash string
	// ConsumedAt is when the pass was consumed; zero before.
	ConsumedAt time.Time
	// AuthorizationID is the authorization created at consumption.
	AuthorizationID string

	// Mission lifecycle (stored state; see MissionStateAt for the state
	// at a time).
	State pass.MissionState
	// Version rises by one with every committed change that affects
	// enforcement (state, scope, expiry), so observers can order them.
	Version     int64
	ActivatedAt time.Time
	// Scope is the mission's current scope, set at approval and only ever
	// narrowed.
	Scope pass.Scope
	// Ended says how the mission ended; nil while it lives.
	Ended *pass.MissionEnd
	// HistoryHead is the hash of the last history entry and HistoryCount
	// the number of entries.
	HistoryHead  string
	HistoryCount int64

	// Stages is the mission's stage plan, nil without one: while pending
	// the plan asked for, from approval on the approved plan (its union is
	// the ceiling). Stage is the current stage's name and PendingStage a
	// forward move waiting for a person (nil when none). Stages is
	// replaced as a whole, never changed in place.
	Stages       []pass.Stage
	Stage        string
	PendingStage *pass.Pending
}

// StatusAt returns the status at now: a pending request past its expiry is
// expired.
func (r *Request) StatusAt(now time.Time) pass.Status {
	if r.Status == pass.StatusPending && !now.Before(r.ExpiresAt) {
		return pass.StatusExpired
	}
	return r.Status
}

// EndsAt returns when r's mission stopped (or will stop) changing: when it
// ended, if it has; its expiry while pending; once approved, the end of its
// delegation if the pass was redeemed (the mission lives as long as its
// authorization), else the pass's expiry; its decision time otherwise.
// Stores count their retention of finished records from it, so a mission
// is never dropped while its authorization can still be revoked.
func (r *Request) EndsAt() time.Time {
	switch {
	case r.Ended != nil && !r.Ended.At.IsZero():
		return r.Ended.At
	case r.Status == pass.StatusPending:
		return r.ExpiresAt
	case r.Decision == nil:
		return r.CreatedAt
	case r.Status == pass.StatusApproved:
		if !r.ConsumedAt.IsZero() {
			if end := r.Decision.AuthorizationExpiresAt; end.After(r.ConsumedAt) {
				return end
			}
			return r.ConsumedAt
		}
		return r.Decision.PassExpiresAt
	default:
		return r.Decision.DecidedAt
	}
}

// Clone returns a deep copy of r.
func (r *Request) Clone() *Request {
	c := new(Request)
	p := scopePack(make([]string, 0, r.scopeLen()))
	b := rawPack(make([]byte, 0, len(r.Cnf)))
	r.cloneInto(c, &p, &b, nil)
	return c
}

// scopeLen is the room r's scopes take in a scopePack.
func (r *Request) scopeLen() int {
	n := len(r.AvailableScope) + len(r.ProposedScope) + len(r.RequestedScope) + len(r.Scope)
	if r.Decision != nil {
		n += len(r.Decision.Scope)
	}
	for _, s := range r.Stages {
		n += len(s.Scope)
	}
	return n
}

// cloneInto makes *c a deep copy of r, its scopes and key taken from p
// and b (sized with scopeLen and len(Cnf)) and its decision stored in d
// when not nil: stores clone on every answer, and a few allocations beat a
// dozen.
func (r *Request) cloneInto(c *Request, p *scopePack, b *rawPack, d *Evidence) {
	*c = *r
	c.Cnf = b.take(r.Cnf)
	c.AvailableScope = p.take(r.AvailableScope)
	c.ProposedScope = p.take(r.ProposedScope)
	c.RequestedScope = p.take(r.RequestedScope)
	c.Proposal = r.Proposal.clone()
	c.Effects = maps.Clone(r.Effects)
	c.Scope = p.take(r.Scope)
	if r.Stages != nil {
		c.Stages = make([]pass.Stage, len(r.Stages))
		for i, s := range r.Stages {
			c.Stages[i] = pass.Stage{Name: s.Name, Scope: p.take(s.Scope), Gate: s.Gate}
		}
	}
	if r.PendingStage != nil {
		p := *r.PendingStage
		c.PendingStage = &p
	}
	if r.Ended != nil {
		e := *r.Ended
		c.Ended = &e
	}
	if r.Decision != nil {
		if d == nil {
			d = new(Evidence)
		}
		*d = *r.Decision
		d.Scope = p.take(r.Decision.Scope)
		c.Decision = d
	}
}

// rawPack hands out copies of keys from one backing array, as scopePack.
type rawPack []byte

// take returns a copy of b, nil when b is empty (as cloneRaw).
func (p *rawPack) take(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	n := len(*p)
	*p = append(*p, b...)
	return json.RawMessage((*p)[n:len(*p):len(*p)])
}

// scopePack hands out copies of scopes from one backing array, allocated
// with room for all of them.
type scopePack []string

// take returns a copy of s (nil for nil) in p's backing array, capped at
// its length.
func (p *scopePack) take(s pass.Scope) pass.Scope {
	if s == nil {
		return nil
	}
	if len(s) == 0 {
		return pass.Scope{}
	}
	n := len(*p)
	*p = append(*p, s...)
	return pass.Scope((*p)[n:len(*p):len(*p)])
}

// Authorize returns the authorization that consuming r's pass creates, with
// the given id, at now. Store implementations call it inside ConsumePass.
func (r *Request) Authorize(id string, now time.Time) *Authorization {
	return r.authorize(id, now, false)
}

// authorize is Authorize; with shared set the authorization shares r's key
// and scopes instead of copying them, for a store whose records are
// replaced, never changed in place, so that sharing is never seen.
func (r *Request) authorize(id string, now time.Time, shared bool) *Authorization {
	a := &Authorization{
		ID:              id,
		MissionID:       r.MissionID,
		State:           pass.DelegationActive,
		Service:         r.Service,
		Type:            r.Type,
		User:            r.User,
		AgentID:         r.AgentID,
		HarnessID:       r.HarnessID,
		Cnf:             r.Cnf,
		HardenedBinding: r.HardenedBinding,
		Tier:            r.Tier,
		TaskID:          r.TaskID,
		TaskDescription: r.TaskDescription,
		TaskAttested:    r.TaskAttested,
		DestinationURL:  r.DestinationURL,
		CreatedAt:       now,
		UpdatedAt:       now,
	}
	if r.Decision != nil {
		a.Approval = *r.Decision
		a.ExpiresAt = r.Decision.AuthorizationExpiresAt
		if shared {
			a.GrantedScope, a.Scope = r.Decision.Scope, r.Scope
			return a
		}
		p := scopePack(make([]string, 0, 2*len(r.Decision.Scope)+len(r.Scope)))
		a.Approval.Scope = p.take(r.Decision.Scope)
		a.GrantedScope = p.take(r.Decision.Scope)
		a.Scope = p.take(r.Scope)
	}
	if !shared {
		a.Cnf = cloneRaw(r.Cnf)
	}
	return a
}

// Evidence records a decision: who or which rule decided, when, why, and
// what was granted. Together with the request's AvailableScope, Tier and
// TaskAttested it is the record an auditor asks for.
type Evidence struct {
	// Status is approved, denied or canceled.
	Status pass.Status
	// DecidedBy names the decider, e.g. "rule:read-only" or
	// "human:alex@corp.example".
	DecidedBy string
	DecidedAt time.Time
	Reason    string
	// Scope is the granted scope (approved only).
	Scope pass.Scope
	// PassExpiresAt is when the pass stops being redeemable (approved only).
	PassExpiresAt time.Time
	// AuthorizationExpiresAt is the delegation's end (approved only).
	AuthorizationExpiresAt time.Time
	// MaxDepth is how many generations of sub-agent missions may be
	// delegated below this one (approved only); zero allows none.
	MaxDepth int
	// MaxChildren bounds the live child missions at once (approved only).
	MaxChildren int
	// ScopeDecision records how the granted scope was derived
	// (pass.ScopeAsRequested, pass.ScopeHumanEdited, ...; approved only);
	// empty when neither a requested scope nor a proposal existed.
	ScopeDecision string
	// DisclosureSHA256 is the hex SHA-256 of the canonical JSON of what a
	// person was shown when deciding (Decision.DisclosureSHA256).
	DisclosureSHA256 string
}

// Clone returns a deep copy of e.
func (e Evidence) Clone() Evidence {
	e.Scope = cloneScope(e.Scope)
	return e
}

// Authorization is a delegation created when a pass was consumed: the
// durable handle behind authorization_id.
type Authorization struct {
	ID string
	// MissionID is the mission whose pass was redeemed: its lifecycle and
	// delegation graph govern this authorization.
	MissionID string
	// State is the stored state, which follows the mission's; an active or
	// suspended authorization past ExpiresAt is expired: use StateAt.
	State pass.DelegationState
	// Service is the origin of the Service that redeemed the pass; only it
	// may check or close the authorization.
	Service         string
	Type            pass.PassType
	User            string
	AgentID         string
	HarnessID       string
	Cnf             json.RawMessage
	HardenedBinding bool // see Request.HardenedBinding
	Tier            dpop.Tier
	TaskID          string
	TaskDescription string
	TaskAttested    bool
	DestinationURL  string
	// GrantedScope is the scope at approval; Scope is the current scope
	// (narrowed by NarrowScope).
	GrantedScope pass.Scope
	Scope        pass.Scope
	// CreatedAt is the redemption time.
	CreatedAt time.Time
	ExpiresAt time.Time
	// Approval is the evidence of the approval.
	Approval Evidence
	// UpdatedAt, StateBy and StateReason describe the last change.
	UpdatedAt   time.Time
	StateBy     string
	StateReason string
	// ClosedAt is when it was completed or revoked; zero before.
	ClosedAt time.Time
}

// StateAt returns the state at now: a live authorization past its expiry is
// expired.
func (a *Authorization) StateAt(now time.Time) pass.DelegationState {
	if (a.State == pass.DelegationActive || a.State == pass.DelegationSuspended) && !now.Before(a.ExpiresAt) {
		return pass.DelegationExpired
	}
	return a.State
}

// Clone returns a deep copy of a.
func (a *Authorization) Clone() *Authorization {
	c := new(Authorization)
	p := scopePack(make([]string, 0, a.scopeLen()))
	b := rawPack(make([]byte, 0, len(a.Cnf)))
	a.cloneInto(c, &p, &b)
	return c
}

// scopeLen is the room a's scopes take in a scopePack.
func (a *Authorization) scopeLen() int {
	return len(a.GrantedScope) + len(a.Scope) + len(a.Approval.Scope)
}

// cloneInto makes *c a deep copy of a, as Request.cloneInto.
func (a *Authorization) cloneInto(c *Authorization, p *scopePack, b *rawPack) {
	*c = *a
	c.Cnf = b.take(a.Cnf)
	c.GrantedScope = p.take(a.GrantedScope)
	c.Scope = p.take(a.Scope)
	c.Approval.Scope = p.take(a.Approval.Scope)
}

func cloneRaw(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return append(json.RawMessage(nil), b...)
}

func cloneScope(s pass.Scope) pass.Scope {
	if s == nil {
		return nil
	}
	return append(pass.Scope{}, s...)
}
