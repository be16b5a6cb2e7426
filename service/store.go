package service

import (
	"context"
	"errors"
	"time"

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
	// value (an expiry only ever moves earlier). It does nothing to an
	// invalidated delegation and returns ErrNotFound for an unknown one.
	RecordCheck(ctx context.Context, authorizationID string, at time.Time, scope pass.Scope, expiresAt time.Time) error

	// RecordMissionCheck stores the result of an authorization check of a
	// delegation that has a mission (MissionID set), atomically. Answers
	// from replicas of an Authority may arrive out of order, so the
	// mission version orders them:
	//
	//   - When c.Version is not older than the stored MissionVersion, it
	//     does what RecordCheck does (a nil c.Scope leaves CurrentScope
	//     unchanged) and sets MissionVersion and MissionState from c: this
	//     holds (suspended) or releases (active) the delegation. It
	//     returns true.
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

	// SavePendingClose stores p, replacing the record with the same
	// AuthorizationID. A bounded store that is full returns ErrStoreFull.
	SavePendingClose(ctx context.Context, p *PendingClose) error

	// DuePendingCloses returns at most limit pending closes whose
	// NextAttempt is not after now, earliest first.
	DuePendingCloses(ctx context.Context, now time.Time, limit int) ([]*PendingClose, error)

	// DeletePendingClose forgets the pending close of authorizationID. It
	// is idempotent: an unknown id is not an error.
	DeletePendingClose(ctx context.Context, authorizationID string) error
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
}

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
