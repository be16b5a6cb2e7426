package service

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// Store keeps the state of a Service: delegations (one per redeemed
// AgentPass, keyed by the Authority's authorization_id), credentials
// (bearer tokens and browser sessions, keyed by the SHA-256 of their
// secret) and one-time initialization tokens. Replicas that share one Store
// share single-use, revocation and the authorization-check cache. (Proof
// and assertion jtis are kept by Config.ReplayCache.)
//
// Every method receives the current time from the Service, so stores need
// no clock of their own and SQL stores can compare with a parameter
// instead of the database's now(). Implementations must be safe for
// concurrent use; the operations documented as atomic must be atomic
// across every replica sharing the store (one conditional statement, or a
// transaction, in SQL). The in-memory implementation is [NewMemoryStore];
// package servicetest holds a conformance suite every implementation must
// pass.
//
// Errors: [ErrNotFound], [ErrConflict], [ErrInitUsed], [ErrInitExpired] and
// [ErrStoreFull] as documented per method (wrapped is fine); any other
// error is an internal failure, and the Service then fails closed.
type Store interface {
	// Redeem stores a new delegation together with exactly one of cred (a
	// bearer token) or init (an initialization token), atomically: either
	// both records exist afterwards or neither does. A delegation with the
	// same AuthorizationID that already exists (even invalidated) makes it
	// return ErrConflict and store nothing, unless that delegation holds
	// the credential or initialization token of this call (same hash): the
	// call is then a retry of a Redeem whose answer was lost with its
	// connection, and it returns nil.
	Redeem(ctx context.Context, d *DelegationRecord, cred *CredentialRecord, init *InitRecord) error

	// ConsumeInit atomically marks the initialization token with the given
	// hash as used and returns it, so that of any number of concurrent
	// calls at most one succeeds. It returns ErrNotFound for an unknown
	// hash, ErrInitUsed when the token was already consumed (successfully
	// or not) and ErrInitExpired when ExpiresAt is not after now; in the
	// last case the token is marked used as well.
	ConsumeInit(ctx context.Context, hash string, now time.Time) (*InitRecord, error)

	// AddCredential stores a credential (a browser session after
	// initialization) for an existing delegation. It returns ErrNotFound
	// when the delegation does not exist and ErrConflict when it was
	// invalidated or the hash is taken.
	AddCredential(ctx context.Context, c *CredentialRecord) error

	// Credential returns the credential with the given hash and its
	// delegation in one read. It returns ErrNotFound for an unknown hash
	// and for a credential whose ExpiresAt is not after now. An invalidated
	// delegation is returned as such (Invalidated set): the caller decides.
	Credential(ctx context.Context, hash string, now time.Time) (*CredentialRecord, *DelegationRecord, error)

	// Delegation returns the delegation with the given authorization id,
	// or ErrNotFound.
	Delegation(ctx context.Context, authorizationID string) (*DelegationRecord, error)

	// RecordCheck stores the result of a successful authorization check:
	// CheckedAt = at, CurrentScope = scope (the caller has already
	// intersected it with the redemption-time Scope), and ExpiresAt =
	// expiresAt when expiresAt is not zero and earlier than the stored
	// value (an expiry only ever moves earlier), and clears Stale. It does
	// nothing to an invalidated delegation and returns ErrNotFound for an
	// unknown one.
	RecordCheck(ctx context.Context, authorizationID string, at time.Time, scope pass.Scope, expiresAt time.Time) error

	// RecordMissionCheck stores the result of an authorization check of a
	// delegation that has a mission (MissionID set), atomically. Answers
	// from replicas of an Authority may arrive out of order, so the
	// mission version orders them:
	//
	//   - When c.Version is not older than the stored MissionVersion, it
	//     does what RecordCheck does (a nil c.Scope leaves CurrentScope
	//     unchanged) and sets MissionVersion and MissionState from c: this
	//     holds (suspended) or releases (active) the delegation, and
	//     clears Stale. It returns true.
	//   - Otherwise the answer is stale and may only narrow: CheckedAt
	//     moves as in RecordCheck, CurrentScope becomes its intersection
	//     with c.Scope (when not nil), ExpiresAt only moves earlier; the
	//     mission state and version stay. It returns false.
	//
	// It does nothing to an invalidated delegation (false, nil) and
	// returns ErrNotFound for an unknown one.
	RecordMissionCheck(ctx context.Context, authorizationID string, c MissionCheck) (bool, error)

	// Invalidate marks the delegation invalid, which at once invalidates
	// every credential and initialization token of it: Credential reports
	// the delegation as Invalidated from then on, for every replica. It is
	// idempotent (the first reason and time are kept) and returns
	// ErrNotFound for an unknown id.
	Invalidate(ctx context.Context, authorizationID string, at time.Time, reason string) error

	// InvalidateTree does what Invalidate does and, in the same atomic
	// operation, invalidates every delegation from the same Authority
	// (same Authority and ConfigurationURL: a configuration may claim any
	// identifier) whose Ancestors include the delegation's MissionID (its
	// sub-agents, at any depth), with the reason "cascade: " + reason: a
	// sub-agent never outlives at this Service the delegation it derives
	// from, even when its own revocation is lost. Delegations of other
	// Authorities are never touched, whatever their ancestors say. It
	// reports how many
	// delegations it invalidated that were not invalidated before, and
	// returns ErrNotFound for an unknown id.
	InvalidateTree(ctx context.Context, authorizationID string, at time.Time, reason string) (int, error)

	// SavePendingClose stores p, replacing the record with the same
	// AuthorizationID. A bounded store that is full returns ErrStoreFull.
	SavePendingClose(ctx context.Context, p *PendingClose) error

	// DuePendingCloses returns at most limit pending closes whose
	// NextAttempt is not after now, earliest first.
	DuePendingCloses(ctx context.Context, now time.Time, limit int) ([]*PendingClose, error)

	// DeletePendingClose forgets the pending close of authorizationID. It
	// is idempotent: an unknown id is not an error.
	DeletePendingClose(ctx context.Context, authorizationID string) error

	// ApplyEvent applies a verified security event to the delegation
	// (e.Authority, e.AuthorizationID), atomically, and reports whether it
	// changed anything. Events may arrive late, twice or out of order, so
	// the mission version orders them:
	//
	//   - An event with a Version not newer than the stored MissionVersion
	//     changes nothing (false). An event without a Version (0) is
	//     applied only for EventRevoke, EventEnd and EventNarrow.
	//   - EventRevoke invalidates the delegation; EventEnd does too, and
	//     with it every delegation of the same Authority (and
	//     ConfigurationURL) whose mission is e.MissionID or descends from
	//     it (Ancestors).
	//   - EventHold sets MissionState to suspended.
	//   - EventNarrow sets CurrentScope to its intersection with e.Scope,
	//     and sets Stale when e.Scope is not within the old CurrentScope;
	//     otherwise a non-empty e.Stage becomes the record's Stage.
	//   - EventRecheck only sets Stale.
	//   - A Version more than one above the stored one also sets Stale;
	//     every applied Version except EventRecheck's becomes the stored
	//     MissionVersion.
	//
	// An event naming another mission than the delegation's changes
	// nothing, and an invalidated delegation is left alone (false, nil). It
	// returns ErrNotFound when no delegation of e.Authority has that id.
	ApplyEvent(ctx context.Context, e MissionEvent) (bool, error)
}

// ProofRecordingStore is a [Store] that can record a harness proof's jti
// in the same atomic step as Redeem's write, one round trip fewer per
// redemption with a holder proof. Package servicepg's Store is one when
// Config.ReplayCache is the dpoppg cache on the store's own pool. The
// Service uses it only when SharesReplayCache says so; with any other
// store or cache it records the jti in Config.ReplayCache and then calls
// Redeem.
type ProofRecordingStore interface {
	Store

	// SharesReplayCache reports whether RedeemRecorded can record pairs
	// of c (the Service's Config.ReplayCache) in its own transactions.
	SharesReplayCache(c dpop.ReplayCache) bool

	// RedeemRecorded is Redeem made conditional on a replay record: it
	// calls record once with a cache whose Seen, in one atomic step,
	// records the pair as c's Seen would and, unless the pair was already
	// held, writes what Redeem writes. On a replay nothing is written.
	// It returns record's error (a replay among them) or Redeem's, and
	// nil only when the pair and the records are both stored.
	RedeemRecorded(ctx context.Context, c dpop.ReplayCache, d *DelegationRecord, cred *CredentialRecord, init *InitRecord,
		record func(dpop.ReplayCache) error) error
}

// EventAction is what a security event asks of a delegation (see
// Store.ApplyEvent).
type EventAction uint8

// Event actions, from the event's type and mission state.
const (
	// EventRevoke ends this delegation only.
	EventRevoke EventAction = iota + 1
	// EventEnd ends the mission: the delegation, the mission's other
	// delegations and its descendants'.
	EventEnd
	// EventHold holds the delegation while its mission is suspended.
	EventHold
	// EventNarrow narrows the delegation's current scope.
	EventNarrow
	// EventRecheck asks for an authorization check before the next
	// request: events may narrow, but only the Authority's answer to a
	// check may widen.
	EventRecheck
)

// MissionEvent is a verified security event about one delegation, as a
// Store applies it.
type MissionEvent struct {
	// Authority is the event's issuer: only a delegation of this Authority
	// is touched, since authorization and mission ids are chosen by
	// Authorities and one must not reach another's delegations.
	Authority       string
	AuthorizationID string
	// MissionID and Version are the event's mission and its version
	// after the change; empty and 0 when the event carried none.
	MissionID string
	Version   int64
	Action    EventAction
	// Scope is the mission's scope after the change (EventNarrow).
	Scope pass.Scope
	// Stage is the mission's stage after a stage move (EventNarrow). It is
	// recorded only when Scope is within the current scope: a wider stage
	// waits for the check that confirms it.
	Stage string
	// At and Reason are recorded with an invalidation.
	At     time.Time
	Reason string
}

// versionOK reports whether e may be applied over a stored version:
// never regress, and an unversioned event only ends or narrows.
func (e *MissionEvent) versionOK(stored int64) bool {
	if e.Version == 0 {
		return e.Action == EventRevoke || e.Action == EventEnd || e.Action == EventNarrow
	}
	return e.Version > stored
}

// Store errors.
var (
	// ErrNotFound: no such record (or, for Credential, an expired one).
	ErrNotFound = errors.New("service: not found")
	// ErrConflict: the record exists already, or its delegation was
	// invalidated.
	ErrConflict = errors.New("service: conflict")
	// ErrInitUsed: the initialization token was already consumed.
	ErrInitUsed = errors.New("service: initialization token already used")
	// ErrInitExpired: the initialization token expired.
	ErrInitExpired = errors.New("service: initialization token expired")
	// ErrStoreFull: a bounded store refused a new record rather than drop
	// live state.
	ErrStoreFull = errors.New("service: store full")
)

// MissionCheck is what an authorization check learned about a delegation
// whose Authority speaks the mission extension (see
// Store.RecordMissionCheck).
type MissionCheck struct {
	// At is the time of the check.
	At time.Time
	// Scope is the delegation's scope now (already intersected with the
	// redemption-time Scope), or nil when the answer carried none (a
	// suspended mission's 404).
	Scope pass.Scope
	// ExpiresAt is authorization_expires_at of the answer, zero when
	// absent.
	ExpiresAt time.Time
	// State and Version are the mission's, as the answer reported them.
	// Version 0 is older than every stored version: the answer could not
	// be ordered (it named no mission, or another one), so it only
	// narrows.
	State   pass.MissionState
	Version int64
	// Stage is the mission's current stage as the answer reported it,
	// empty when it named none; stored with the scope when applied.
	Stage string
}

// CredentialKind says what a credential is.
type CredentialKind string

// Credential kinds.
const (
	// KindBearer is a bearer token sent as "Authorization: Bearer".
	KindBearer CredentialKind = "bearer"
	// KindDPoP is a DPoP-bound token sent as "Authorization: DPoP" with a
	// DPoP proof of the key whose thumbprint is JKT (RFC 9449).
	KindDPoP CredentialKind = "dpop"
	// KindSession is a browser session cookie.
	KindSession CredentialKind = "session"
)

// DelegationRecord is the Service's record of one redeemed AgentPass: the
// delegation as validated by the Authority, and the state of its
// continuous validation. It is a plain value for Store implementations.
type DelegationRecord struct {
	// AuthorizationID is the Authority's handle of the delegation (unique
	// key).
	AuthorizationID string
	// Authority is the Authority identifier (configuration "authority").
	Authority string
	// ConfigurationURL is where the Authority's configuration was found.
	ConfigurationURL string
	// TrustMode is how the Authority was trusted.
	TrustMode pass.TrustMode
	// User is the validated user.email in canonical form (see
	// pass.CanonicalEmail); Agent the validated agent.id.
	User, Agent string
	// HarnessID is the harness.id reported by the Authority, if any.
	HarnessID string
	// Task is the validated task context; zero when absent.
	Task pass.Task
	// Scope is the effective scope granted at redemption (approved,
	// expanded, intersected with requested_scope). It is the upper bound
	// of the delegation forever.
	Scope pass.Scope
	// CurrentScope is Scope narrowed by the last authorization check.
	CurrentScope pass.Scope
	// ExpiresAt is authorization_expires_at; zero when the Authority does
	// not send it.
	ExpiresAt time.Time
	// CreatedAt is the redemption time; CheckedAt the time of the last
	// successful validation or authorization check.
	CreatedAt, CheckedAt time.Time
	// Invalidated is set once the delegation was revoked, closed or found
	// inactive; InvalidatedAt and InvalidReason say when and why.
	Invalidated   bool
	InvalidatedAt time.Time
	InvalidReason string
	// MissionID is the delegation's mission at its Authority, empty when
	// the Authority does not advertise the mission extension. Mission ids
	// are chosen by Authorities, so a mission is named by (Authority,
	// MissionID), never by the id alone: one Authority must not be able to
	// act on another's delegations by naming an id.
	MissionID string
	// MissionVersion is the newest mission version the Service has seen;
	// answers carrying an older one never release a hold or widen the
	// scope.
	MissionVersion int64
	// MissionState is the mission's state as last learned: active, or
	// suspended while the delegation is held (its credentials are kept,
	// requests are refused with 403 mission_suspended, and checks go on
	// until the Authority answers that the mission is active again).
	MissionState pass.MissionState
	// Chain is the delegation chain of a sub-agent's delegation, outermost
	// first: this agent, then the agent it acts for, up to the root, each
	// with its mission id (Act nil). Empty for a root delegation.
	Chain []pass.Actor
	// Ancestors are the mission ids of the delegation's ancestor missions
	// at its Authority, parent first; InvalidateTree ends the delegation
	// with any of them.
	Ancestors []string
	// Stale is set when an event announced a change that only an
	// authorization check may confirm (a widening, or a skipped version):
	// the next request runs a check whatever CheckInterval says. A check
	// whose answer is recorded clears it.
	Stale bool
	// Stage is the mission's current stage and Stages its plan, when the
	// delegation is staged in place (this Service and the Authority both
	// speak the stages extension): Scope is then the upper bound of every
	// stage and CurrentScope the current stage's, and a request needing a
	// scope of a later stage is refused as stage_scope_exceeded. Stages
	// is replaced as a whole, never changed in place, so copies share it.
	Stage  string
	Stages []pass.Stage
}

// staged reports whether the delegation is staged in place.
func (d *DelegationRecord) staged() bool { return len(d.Stages) > 0 }

// held reports whether the delegation is held because its mission is
// suspended.
func (d *DelegationRecord) held() bool { return d.MissionState == pass.MissionSuspended }

// CredentialRecord is a bearer token or a browser session, stored by the
// hash of its secret (the secret itself is never stored).
type CredentialRecord struct {
	// Hash is the lowercase hex SHA-256 of the secret (unique key).
	Hash string
	// Kind is bearer, DPoP-bound or session.
	Kind CredentialKind
	// AuthorizationID names the delegation.
	AuthorizationID string
	// Scope is the scope granted to this credential (⊆ the delegation's
	// Scope).
	Scope pass.Scope
	// JKT is the RFC 7638 thumbprint of the DPoP key (KindDPoP only).
	JKT string
	// CreatedAt and ExpiresAt bound the credential's life.
	CreatedAt, ExpiresAt time.Time
}

// InitRecord is a one-time browser-session initialization token, stored
// by the hash of its secret.
type InitRecord struct {
	// Hash is the lowercase hex SHA-256 of the token (unique key).
	Hash string
	// AuthorizationID names the delegation.
	AuthorizationID string
	// Scope is the scope the session will carry.
	Scope pass.Scope
	// Destination is the absolute URL to redirect to after
	// initialization; it was checked at redemption.
	Destination string
	// CreatedAt and ExpiresAt bound the token's life.
	CreatedAt, ExpiresAt time.Time
	// Used is set by ConsumeInit.
	Used bool
}

// clone helpers: stores hand out copies so callers cannot mutate state.

func cloneScope(s pass.Scope) pass.Scope {
	if s == nil {
		return nil
	}
	return append(pass.Scope{}, s...)
}

func (d *DelegationRecord) clone() *DelegationRecord {
	c := *d
	c.Scope = cloneScope(d.Scope)
	c.CurrentScope = cloneScope(d.CurrentScope)
	c.Chain = slices.Clone(d.Chain)
	c.Ancestors = slices.Clone(d.Ancestors)
	return &c
}

func (c *CredentialRecord) clone() *CredentialRecord {
	o := *c
	o.Scope = cloneScope(c.Scope)
	return &o
}

func (r *InitRecord) clone() *InitRecord {
	o := *r
	o.Scope = cloneScope(r.Scope)
	return &o
}
