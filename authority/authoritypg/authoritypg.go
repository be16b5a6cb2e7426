package authoritypg

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/pgutil"
	"github.com/agentpass-go/agentpass/pass"
)

// Migrations holds the schema as files migrations/NNN_description.sql, to
// be applied in order, for operators who run their own migration tool
// instead of Migrate (which applies them and records them in
// agentpass_schema_migrations under the component "authority").
//
//go:embed migrations/*.sql
var Migrations embed.FS

// component names this package's migrations in agentpass_schema_migrations.
const component = "authority"

// DefaultRetention is how long Prune keeps a record after it can no longer
// change (a request expired, decided and dead, or consumed; an
// authorization closed or expired), so that late polls and checks get a
// precise answer rather than "unknown". It matches
// authority.MemoryStoreRetention.
const DefaultRetention = time.Hour

// DefaultPruneLimit is the per-table batch of Prune when given zero (the
// batch RunJanitor uses too).
const DefaultPruneLimit = 1000

// Store is an authority.Store on PostgreSQL. Every replica of an Authority
// may hold its own Store on its own pool over the same database: each state
// transition is one conditional statement (or one short transaction), so
// single use and terminal states hold across replicas. It is safe for
// concurrent use.
//
// Times are stored as timestamptz, with microsecond precision: a time is
// truncated to the microsecond, which for every "unexpired" comparison errs
// on the side of expired.
type Store struct {
	pool      *pgxpool.Pool
	retention time.Duration
	logger    *slog.Logger
	now       func() time.Time
}

var _ authority.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithRetention sets how long Prune keeps records that can no longer change
// (default DefaultRetention; d <= 0 keeps the default).
func WithRetention(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.retention = d
		}
	}
}

// WithLogger sets where RunJanitor reports failed prunes (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.logger = l
		}
	}
}

// WithNow sets the clock RunJanitor passes to Prune (default time.Now).
// Every other method takes the time from its caller.
func WithNow(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// New returns a Store on pool. Call Migrate once (from any replica) before
// use. The pool stays the caller's: Store never closes it.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool, retention: DefaultRetention, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Migrate creates or upgrades the store's tables from the migrations
// embedded in the package. It is idempotent and safe to run from several
// replicas at once (pgutil.Migrate holds an advisory lock).
func (s *Store) Migrate(ctx context.Context) error {
	if err := pgutil.MigrateFS(ctx, s.pool, component, Migrations, "migrations"); err != nil {
		return fmt.Errorf("authoritypg: %w", err)
	}
	return nil
}

// Column lists, in the order the scan functions read them.
const (
	requestColumns = `id, status, created_at, expires_at, type, service, user_email, harness_id, cnf,
		agent_id, tier, attestation_issuer, task_id, task_description, task_attested, destination_url,
		available_scope, proposed_scope, proposed_by, parent_authorization_id,
		decision_status, decided_by, decided_at, decision_reason, decision_scope, pass_expires_at,
		authorization_expires_at, pass_hash, consumed_at, authorization_id, hardened_binding`
	authorizationColumns = `id, request_id, parent_id, state, service, type, user_email, agent_id,
		harness_id, cnf, tier, task_id, task_description, task_attested, destination_url,
		granted_scope, scope, created_at, expires_at,
		approval_status, approval_by, approval_at, approval_reason, approval_scope,
		approval_pass_expires_at, approval_authorization_expires_at,
		updated_at, state_by, state_reason, closed_at, hardened_binding`
)

// CreateRequest implements authority.Store.
func (s *Store) CreateRequest(ctx context.Context, r *authority.Request) error {
	if r == nil || r.ID == "" {
		return errors.New("authoritypg: CreateRequest: empty request id")
	}
	var (
		decStatus                    pgtype.Text
		decidedBy, decReason         string
		decidedAt, passExp, authzExp pgtype.Timestamptz
		decScope                     []string
	)
	if d := r.Decision; d != nil {
		decStatus = pgtype.Text{String: string(d.Status), Valid: true}
		decidedBy, decReason = d.DecidedBy, d.Reason
		decidedAt, passExp, authzExp = ts(d.DecidedAt), ts(d.PassExpiresAt), ts(d.AuthorizationExpiresAt)
		decScope = scopeArg(d.Scope)
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO agentpass_authority_requests (`+requestColumns+`, ends_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
			$21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)`,
		r.ID, string(r.Status), ts(r.CreatedAt), ts(r.ExpiresAt), string(r.Type), r.Service, r.User, r.HarnessID, jsonArg(r.Cnf),
		r.AgentID, string(r.Tier), r.AttestationIssuer, r.TaskID, r.TaskDescription, r.TaskAttested, r.DestinationURL,
		scopeArg(r.AvailableScope), scopeArg(r.ProposedScope), r.ProposedBy, r.ParentAuthorizationID,
		decStatus, decidedBy, decidedAt, decReason, decScope, passExp,
		authzExp, textArg(r.PassHash), ts(r.ConsumedAt), textArg(r.AuthorizationID), r.HardenedBinding, r.EndsAt())
	if isUniqueViolation(err) {
		return authority.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("authoritypg: CreateRequest: %w", err)
	}
	return nil
}

// Request implements authority.Store.
func (s *Store) Request(ctx context.Context, id string) (*authority.Request, error) {
	r, err := scanRequest(s.pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM agentpass_authority_requests WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, authority.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("authoritypg: Request: %w", err)
	}
	return r, nil
}

// PendingRequests implements authority.Store.
func (s *Store) PendingRequests(ctx context.Context, opts authority.ListOptions) ([]*authority.Request, error) {
	where, args := listFilter(opts, `status = 'pending' AND expires_at > $1`)
	rows, err := s.pool.Query(ctx, `SELECT `+requestColumns+` FROM agentpass_authority_requests
		WHERE `+where+` ORDER BY created_at, id LIMIT `+strconv.Itoa(opts.EffectiveLimit()), args...)
	if err != nil {
		return nil, fmt.Errorf("authoritypg: PendingRequests: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*authority.Request, error) { return scanRequest(row) })
	if err != nil {
		return nil, fmt.Errorf("authoritypg: PendingRequests: %w", err)
	}
	return out, nil
}

// DecideRequest implements authority.Store with one conditional UPDATE:
// only a request that is pending and unexpired at now changes. When no row
// changes, a read (which changes nothing) says why.
func (s *Store) DecideRequest(ctx context.Context, id string, d authority.Evidence, now time.Time) (*authority.Request, error) {
	if !d.Status.Terminal() || d.Status == pass.StatusExpired {
		return nil, fmt.Errorf("authoritypg: DecideRequest: status %q is not a decision", d.Status)
	}
	end := d.DecidedAt
	if d.Status == pass.StatusApproved {
		end = d.PassExpiresAt
	}
	r, err := scanRequest(s.pool.QueryRow(ctx, `
		UPDATE agentpass_authority_requests
		SET status = $2, decision_status = $2, decided_by = $3, decided_at = $4, decision_reason = $5,
			decision_scope = $6, pass_expires_at = $7, authorization_expires_at = $8, ends_at = $9
		WHERE id = $1 AND status = 'pending' AND expires_at > $10
		RETURNING `+requestColumns,
		id, string(d.Status), d.DecidedBy, ts(d.DecidedAt), d.Reason,
		scopeArg(d.Scope), ts(d.PassExpiresAt), ts(d.AuthorizationExpiresAt), end, now))
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("authoritypg: DecideRequest: %w", err)
	}
	var status string
	var expires pgtype.Timestamptz
	err = s.pool.QueryRow(ctx, `SELECT status, expires_at FROM agentpass_authority_requests WHERE id = $1`, id).Scan(&status, &expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, authority.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("authoritypg: DecideRequest: %w", err)
	case pass.Status(status) != pass.StatusPending:
		return nil, authority.ErrNotPending
	case !now.Before(tm(expires)):
		return nil, authority.ErrExpired
	}
	// Pending and unexpired, yet the UPDATE matched nothing: only a clock
	// finer than the database's (nanoseconds truncated) gets here.
	return nil, authority.ErrExpired
}

// RotatePass implements authority.Store with one conditional UPDATE.
func (s *Store) RotatePass(ctx context.Context, id, passHash string, now time.Time) (*authority.Request, error) {
	if passHash == "" {
		return nil, errors.New("authoritypg: RotatePass: empty hash")
	}
	r, err := scanRequest(s.pool.QueryRow(ctx, `
		UPDATE agentpass_authority_requests SET pass_hash = $2
		WHERE id = $1 AND status = 'approved' AND decision_status IS NOT NULL
			AND consumed_at IS NULL AND pass_expires_at > $3
		RETURNING `+requestColumns, id, passHash, now))
	switch {
	case err == nil:
		return r, nil
	case isUniqueViolation(err):
		return nil, authority.ErrConflict
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("authoritypg: RotatePass: %w", err)
	}
	st, err := s.passState(ctx, `id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("authoritypg: RotatePass: %w", err)
	}
	switch {
	case !st.found:
		return nil, authority.ErrNotFound
	case !st.approved:
		return nil, authority.ErrNotPending
	case st.consumed:
		return nil, authority.ErrConsumed
	}
	return nil, authority.ErrExpired
}

// consumeSQL consumes a pass and creates its authorization in ONE
// statement: the UPDATE claims the pass only if the audience matches and
// it is approved, unconsumed and unexpired at $4; the INSERT builds the
// authorization from the claimed row exactly as authority.Request.Authorize
// does (the conformance suite compares the two). A taken authorization id
// fails the whole statement, so nothing is consumed then.
const consumeSQL = `
	WITH claimed AS (
		UPDATE agentpass_authority_requests
		SET consumed_at = $4, authorization_id = $3, ends_at = $4
		WHERE pass_hash = $1 AND service = $2 AND status = 'approved' AND decision_status IS NOT NULL
			AND consumed_at IS NULL AND pass_expires_at > $4
		RETURNING *
	)
	INSERT INTO agentpass_authority_authorizations (
		id, request_id, parent_id, state, service, type, user_email, agent_id,
		harness_id, cnf, tier, task_id, task_description, task_attested, destination_url,
		granted_scope, scope, created_at, expires_at,
		approval_status, approval_by, approval_at, approval_reason, approval_scope,
		approval_pass_expires_at, approval_authorization_expires_at, updated_at, ends_at, hardened_binding)
	SELECT $3, id, parent_authorization_id, 'active', service, type, user_email, agent_id,
		harness_id, cnf, tier, task_id, task_description, task_attested, destination_url,
		decision_scope, decision_scope, $4, authorization_expires_at,
		decision_status, decided_by, decided_at, decision_reason, decision_scope,
		pass_expires_at, authorization_expires_at, $4, coalesce(authorization_expires_at, $4), hardened_binding
	FROM claimed
	RETURNING ` + authorizationColumns

// ConsumePass implements authority.Store. The consumption is one
// conditional UPDATE (with the authorization's INSERT in the same
// statement); when it claims nothing, a read that changes nothing decides
// between ErrNotFound, ErrWrongAudience, ErrConsumed and ErrExpired.
func (s *Store) ConsumePass(ctx context.Context, passHash, audience, authorizationID string, now time.Time) (*authority.Authorization, error) {
	if authorizationID == "" {
		return nil, errors.New("authoritypg: ConsumePass: empty authorization id")
	}
	a, err := scanAuthorization(s.pool.QueryRow(ctx, consumeSQL, passHash, audience, authorizationID, now))
	switch {
	case err == nil:
		return a, nil
	case isUniqueViolation(err):
		return nil, authority.ErrConflict
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("authoritypg: ConsumePass: %w", err)
	}
	st, err := s.passState(ctx, `pass_hash = $1`, passHash)
	if err != nil {
		return nil, fmt.Errorf("authoritypg: ConsumePass: %w", err)
	}
	switch {
	case !st.found || !st.approved:
		return nil, authority.ErrNotFound
	case st.service != audience:
		return nil, authority.ErrWrongAudience
	case st.consumed:
		return nil, authority.ErrConsumed
	}
	// Unconsumed, so the pass expired (or its microsecond has come).
	return nil, authority.ErrExpired
}

type passState struct {
	found, approved, consumed bool
	service                   string
}

// passState reads what decides a refused consumption or rotation.
func (s *Store) passState(ctx context.Context, where string, arg string) (passState, error) {
	var st passState
	err := s.pool.QueryRow(ctx, `
		SELECT status = 'approved' AND decision_status IS NOT NULL, consumed_at IS NOT NULL, service
		FROM agentpass_authority_requests WHERE `+where, arg).Scan(&st.approved, &st.consumed, &st.service)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	st.found = err == nil
	return st, err
}

// Authorization implements authority.Store.
func (s *Store) Authorization(ctx context.Context, id string) (*authority.Authorization, error) {
	a, err := scanAuthorization(s.pool.QueryRow(ctx, `SELECT `+authorizationColumns+` FROM agentpass_authority_authorizations WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, authority.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("authoritypg: Authorization: %w", err)
	}
	return a, nil
}

// Authorizations implements authority.Store.
func (s *Store) Authorizations(ctx context.Context, opts authority.ListOptions) ([]*authority.Authorization, error) {
	where, args := listFilter(opts, `state IN ('active', 'suspended') AND expires_at > $1`)
	rows, err := s.pool.Query(ctx, `SELECT `+authorizationColumns+` FROM agentpass_authority_authorizations
		WHERE `+where+` ORDER BY created_at DESC, id LIMIT `+strconv.Itoa(opts.EffectiveLimit()), args...)
	if err != nil {
		return nil, fmt.Errorf("authoritypg: Authorizations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*authority.Authorization, error) { return scanAuthorization(row) })
	if err != nil {
		return nil, fmt.Errorf("authoritypg: Authorizations: %w", err)
	}
	return out, nil
}

// UpdateAuthorization implements authority.Store in one short transaction:
// the row is locked (SELECT ... FOR UPDATE), u.Apply decides, the row is
// written back, and a revocation revokes every live descendant before the
// commit.
func (s *Store) UpdateAuthorization(ctx context.Context, id string, u authority.AuthorizationUpdate, now time.Time) (*authority.Authorization, error) {
	if len(u.From) == 0 {
		return nil, errors.New("authoritypg: UpdateAuthorization: empty From")
	}
	var out *authority.Authorization
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := scanAuthorization(tx.QueryRow(ctx, `SELECT `+authorizationColumns+`
			FROM agentpass_authority_authorizations WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return authority.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := u.Apply(a, now); err != nil {
			return err
		}
		end := a.ExpiresAt
		if !a.ClosedAt.IsZero() {
			end = a.ClosedAt
		}
		if _, err := tx.Exec(ctx, `
			UPDATE agentpass_authority_authorizations
			SET state = $2, scope = $3, updated_at = $4, state_by = $5, state_reason = $6, closed_at = $7, ends_at = $8
			WHERE id = $1`,
			id, string(a.State), scopeArg(a.Scope), ts(a.UpdatedAt), a.StateBy, a.StateReason, ts(a.ClosedAt), end); err != nil {
			return err
		}
		if u.To == pass.DelegationRevoked {
			if _, err := tx.Exec(ctx, `
				WITH RECURSIVE descendants(id) AS (
					SELECT id FROM agentpass_authority_authorizations WHERE parent_id = $1
					UNION
					SELECT c.id FROM agentpass_authority_authorizations c JOIN descendants d ON c.parent_id = d.id
				)
				UPDATE agentpass_authority_authorizations
				SET state = 'revoked', closed_at = $2, updated_at = $2, ends_at = $2,
					state_by = $3, state_reason = 'parent authorization revoked'
				WHERE id IN (SELECT id FROM descendants) AND id <> $1
					AND state IN ('active', 'suspended') AND expires_at > $2`,
				id, now, u.By); err != nil {
				return err
			}
		}
		out = a
		return nil
	})
	if err != nil {
		if isStoreError(err) {
			return nil, err
		}
		return nil, fmt.Errorf("authoritypg: UpdateAuthorization: %w", err)
	}
	return out, nil
}

// Prune deletes records that can no longer change and ended more than the
// retention (WithRetention) before now: at most limit requests and at most
// limit authorizations per call (zero means DefaultPruneLimit), so a
// janitor's work per tick is bounded. It reports how many rows it deleted.
func (s *Store) Prune(ctx context.Context, now time.Time, limit int) (int64, error) {
	if limit <= 0 {
		limit = DefaultPruneLimit
	}
	cutoff := now.Add(-s.retention)
	// "= ANY (ARRAY (subquery))" makes the planner fetch the batch by
	// the ends_at index and delete it by primary key: the work is bounded
	// by limit, however large the backlog. (A row that ended cannot
	// change any more, so it needs no re-check.)
	var total int64
	for _, table := range []string{"agentpass_authority_requests", "agentpass_authority_authorizations"} {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM `+table+` WHERE id = ANY (ARRAY (
				SELECT id FROM `+table+` WHERE ends_at < $1 ORDER BY ends_at LIMIT $2))`, cutoff, limit)
		if err != nil {
			return total, fmt.Errorf("authoritypg: Prune: %w", err)
		}
		total += tag.RowsAffected()
	}
	return total, nil
}

// RunJanitor prunes at once and then every interval (zero means one
// minute) until ctx is done, and returns ctx's error. Each tick calls Prune
// batch after batch until the backlog is gone or the tick has run for
// interval, so the janitor keeps up with any number of records ending per
// second (one batch per tick would fall behind for good). A failing prune,
// or a tick that did not catch up, is logged (WithLogger). Run it in one
// goroutine per replica, or in one replica only: concurrent janitors are
// safe, merely redundant.
func (s *Store) RunJanitor(ctx context.Context, interval time.Duration) error {
	return pgutil.RunJanitor(ctx, interval, s.logger, component, func(ctx context.Context, limit int) (int64, error) {
		return s.Prune(ctx, s.now(), limit)
	})
}

// listFilter returns the WHERE clause and arguments of a listing: base
// (which uses $1 = opts.Now) and the optional user and Service filters. The
// clause is built rather than parameterised with "$2 = ” OR ...", so the
// planner can use the lower(user_email) and service indexes.
func listFilter(opts authority.ListOptions, base string) (string, []any) {
	where := []string{base}
	args := []any{opts.Now}
	if opts.User != "" {
		args = append(args, opts.User)
		where = append(where, "lower(user_email) = lower($"+strconv.Itoa(len(args))+")")
	}
	if opts.Service != "" {
		args = append(args, opts.Service)
		where = append(where, "service = $"+strconv.Itoa(len(args)))
	}
	return strings.Join(where, " AND "), args
}

func scanRequest(row pgx.Row) (*authority.Request, error) {
	var (
		r                                         authority.Request
		status, typ, tier                         string
		created, expires, decidedAt, passExp      pgtype.Timestamptz
		authzExp, consumed                        pgtype.Timestamptz
		cnf                                       []byte
		avail, proposed, decScope                 []string
		decStatus, decidedBy, decReason, passHash pgtype.Text
		authzID                                   pgtype.Text
	)
	err := row.Scan(&r.ID, &status, &created, &expires, &typ, &r.Service, &r.User, &r.HarnessID, &cnf,
		&r.AgentID, &tier, &r.AttestationIssuer, &r.TaskID, &r.TaskDescription, &r.TaskAttested, &r.DestinationURL,
		&avail, &proposed, &r.ProposedBy, &r.ParentAuthorizationID,
		&decStatus, &decidedBy, &decidedAt, &decReason, &decScope, &passExp,
		&authzExp, &passHash, &consumed, &authzID, &r.HardenedBinding)
	if err != nil {
		return nil, err
	}
	r.Status, r.Type, r.Tier = pass.Status(status), pass.PassType(typ), tierOf(tier)
	r.CreatedAt, r.ExpiresAt, r.ConsumedAt = tm(created), tm(expires), tm(consumed)
	r.Cnf = cnfOf(cnf)
	r.AvailableScope, r.ProposedScope = scopeOf(avail), scopeOf(proposed)
	if decStatus.Valid {
		r.Decision = &authority.Evidence{
			Status: pass.Status(decStatus.String), DecidedBy: decidedBy.String, DecidedAt: tm(decidedAt),
			Reason: decReason.String, Scope: scopeOf(decScope),
			PassExpiresAt: tm(passExp), AuthorizationExpiresAt: tm(authzExp),
		}
	}
	r.PassHash, r.AuthorizationID = passHash.String, authzID.String
	return &r, nil
}

func scanAuthorization(row pgx.Row) (*authority.Authorization, error) {
	var (
		a                                    authority.Authorization
		state, typ, tier, apStatus           string
		cnf                                  []byte
		granted, scope, apScope              []string
		created, expires, apAt, apPass, apAz pgtype.Timestamptz
		updated, closed                      pgtype.Timestamptz
	)
	err := row.Scan(&a.ID, &a.RequestID, &a.ParentID, &state, &a.Service, &typ, &a.User, &a.AgentID,
		&a.HarnessID, &cnf, &tier, &a.TaskID, &a.TaskDescription, &a.TaskAttested, &a.DestinationURL,
		&granted, &scope, &created, &expires,
		&apStatus, &a.Approval.DecidedBy, &apAt, &a.Approval.Reason, &apScope,
		&apPass, &apAz,
		&updated, &a.StateBy, &a.StateReason, &closed, &a.HardenedBinding)
	if err != nil {
		return nil, err
	}
	a.State, a.Type, a.Tier = pass.DelegationState(state), pass.PassType(typ), tierOf(tier)
	a.Cnf = cnfOf(cnf)
	a.GrantedScope, a.Scope = scopeOf(granted), scopeOf(scope)
	a.CreatedAt, a.ExpiresAt, a.UpdatedAt, a.ClosedAt = tm(created), tm(expires), tm(updated), tm(closed)
	a.Approval.Status, a.Approval.DecidedAt, a.Approval.Scope = pass.Status(apStatus), tm(apAt), scopeOf(apScope)
	a.Approval.PassExpiresAt, a.Approval.AuthorizationExpiresAt = tm(apPass), tm(apAz)
	return &a, nil
}

// isStoreError reports whether err is one of the authority sentinels, which
// are returned unwrapped.
func isStoreError(err error) bool {
	for _, e := range []error{authority.ErrNotFound, authority.ErrConflict, authority.ErrNotPending, authority.ErrExpired,
		authority.ErrConsumed, authority.ErrWrongAudience, authority.ErrState, authority.ErrScopeWiden} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
