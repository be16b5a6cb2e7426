package servicepg

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/foldmark"
	"github.com/agentpass-go/agentpass/internal/pgreplay"
	"github.com/agentpass-go/agentpass/internal/pgutil"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// Migrations holds the schema as files migrations/NNN_description.sql, to
// be applied in order, for operators who run their own migration tool
// instead of Migrate (which applies them and records them in
// agentpass_schema_migrations under the component "service").
//
//go:embed migrations/*.sql
var Migrations embed.FS

// component names this package's migrations in agentpass_schema_migrations.
const component = "service"

// initRetention is how long Prune keeps an initialization token after its
// expiry, so that a late visit is told "used or expired" rather than
// "unknown" (as service.MemoryStore does).
const initRetention = 10 * time.Minute

// defaultPruneLimit is the per-table batch of Prune when given zero (the
// batch RunJanitor uses too).
const defaultPruneLimit = 1000

// Store is a service.Store on PostgreSQL. Every replica of a Service may
// hold its own Store on its own pool over the same database: single use of
// initialization tokens, redemption and invalidation are each one
// statement, so they hold across replicas. It is safe for concurrent
// use.
//
// Times are stored as timestamptz, with microsecond precision: a time is
// truncated to the microsecond, which for every "unexpired" comparison errs
// on the side of expired.
type Store struct {
	// mark tells the Service this Store from a value embedding it, which
	// may override what RedeemRecorded would bypass.
	mark
	pool   *pgxpool.Pool
	logger *slog.Logger
	now    func() time.Time
}

var _ service.ProofRecordingStore = (*Store)(nil)

// mark is embedded under an unexported name: it adds nothing to the API.
type mark = foldmark.Mark

// Option configures a Store.
type Option func(*Store)

// WithLogger sets where RunJanitor reports failed prunes (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.logger = l
		}
	}
}

// WithClock sets the clock RunJanitor passes to Prune (default time.Now).
// Every other method takes the time from its caller.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// New returns a Store on pool. Call Migrate once (from any replica) before
// use. The pool stays the caller's: Store never closes it.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	s.mark.Set(s)
	return s
}

// Migrate creates or upgrades the store's tables from the migrations
// embedded in the package. It is idempotent and safe to run from several
// replicas at once (pgutil.Migrate holds an advisory lock).
func (s *Store) Migrate(ctx context.Context) error {
	if err := pgutil.MigrateFS(ctx, s.pool, component, Migrations, "migrations"); err != nil {
		return fmt.Errorf("servicepg: %w", err)
	}
	return nil
}

const (
	delegationColumns = `d.authorization_id, d.authority, d.configuration_url, d.trust_mode, d.user_email, d.agent,
		d.harness_id, d.task_id, d.task_description, d.task_attested, d.scope, d.current_scope,
		d.expires_at, d.created_at, d.checked_at, d.invalidated, d.invalidated_at, d.invalid_reason,
		d.mission_id, d.mission_version, d.mission_state, d.chain, d.ancestors, d.stale, d.mission_stage, d.mission_stages`
	credentialColumns = `c.hash, c.kind, c.authorization_id, c.scope, c.jkt, c.created_at, c.expires_at`

	// delegationInsert and delegationValues are the first half of
	// Redeem: $1..$23 and $30..$32 (stale and the stage came after the
	// credential's $24..$29).
	delegationInsert = `
			INSERT INTO agentpass_service_delegations (authorization_id, authority, configuration_url, trust_mode,
				user_email, agent, harness_id, task_id, task_description, task_attested, scope, current_scope,
				expires_at, created_at, checked_at, invalidated, invalidated_at, invalid_reason,
				mission_id, mission_version, mission_state, chain, ancestors, stale, mission_stage, mission_stages)`
	delegationValues = `$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
				$22::jsonb, $23::text[], $30::boolean, $31::text, $32::text`
	// The second half: the credential or the initialization token, written
	// only when d wrote the delegation.
	credentialInsert = `
		INSERT INTO agentpass_service_credentials (hash, kind, authorization_id, scope, jkt, created_at, expires_at)
		SELECT $24::text, $25::text, d.authorization_id, $26::text[], $27::text, $28::timestamptz, $29::timestamptz FROM d`
	initInsert = `
		INSERT INTO agentpass_service_init_tokens (hash, authorization_id, scope, destination, created_at, expires_at, used)
		SELECT $24::text, d.authorization_id, $25::text[], $26::text, $27::timestamptz, $28::timestamptz, $29::boolean FROM d`
)

// The statements of Redeem and of RedeemRecorded, by what they write. A
// recorded redemption first runs the replay table's own statement for the
// harness proof's pair, from $33 on: its claim, or, for a pair already past
// its expiry, only its lookup, as dpoppg does. The delegation, and so the
// credential, is inserted only when that found the pair free, all in one
// statement.
var (
	plainDelegation   = `WITH d AS (` + delegationInsert + ` VALUES (` + delegationValues + `) RETURNING authorization_id)`
	claimedDelegation = `, d AS (` + delegationInsert + ` SELECT ` + delegationValues + `
			WHERE EXISTS (SELECT 1 FROM claim) RETURNING authorization_id)`
	claimCTE  = `WITH claim AS (` + pgreplay.ClaimCTE(pgreplay.SeenSQL, 33) + `)`
	lookupCTE = `WITH claim AS (` + pgreplay.ClaimCTE(pgreplay.ContainsSQL, 33) + `)`

	redeemSQL = [2]string{plainDelegation + credentialInsert, plainDelegation + initInsert}
	// recordedSQL[past][init]
	recordedSQL = [2][2]string{
		{claimCTE + claimedDelegation + credentialInsert, claimCTE + claimedDelegation + initInsert},
		{lookupCTE + claimedDelegation + credentialInsert, lookupCTE + claimedDelegation + initInsert},
	}
)

// Redeem implements service.Store: the delegation and its credential or
// initialization token are inserted by ONE statement (a data-modifying
// CTE), so both exist afterwards or neither does. A taken authorization id
// or hash violates a unique key and gives service.ErrConflict.
func (s *Store) Redeem(ctx context.Context, d *service.DelegationRecord, cred *service.CredentialRecord, init *service.InitRecord) error {
	args, err := redeemArgs(d, cred, init)
	if err != nil {
		return err
	}
	_, err = s.redeem(ctx, redeemSQL[b2i(init != nil)], args, d, cred, init)
	return err
}

// redeemArgs are the parameters $1..$32 of the redemption statements.
func redeemArgs(d *service.DelegationRecord, cred *service.CredentialRecord, init *service.InitRecord) ([]any, error) {
	if d == nil || d.AuthorizationID == "" || (cred == nil) == (init == nil) {
		return nil, errors.New("servicepg: Redeem: need a delegation and exactly one of credential or init token")
	}
	args := make([]any, 0, 35)
	args = append(args, d.AuthorizationID, d.Authority, d.ConfigurationURL, string(d.TrustMode),
		d.User, d.Agent, d.HarnessID, d.Task.ID, d.Task.Description, d.Task.Attested, scopeArg(d.Scope), scopeArg(d.CurrentScope),
		ts(d.ExpiresAt), ts(d.CreatedAt), ts(d.CheckedAt), d.Invalidated, ts(d.InvalidatedAt), d.InvalidReason,
		d.MissionID, d.MissionVersion, string(d.MissionState), chainArg(d.Chain), ancestorsArg(d.Ancestors))
	if cred != nil {
		args = append(args, cred.Hash, string(cred.Kind), scopeArg(cred.Scope), cred.JKT, cred.CreatedAt, cred.ExpiresAt)
	} else {
		args = append(args, init.Hash, scopeArg(init.Scope), init.Destination, init.CreatedAt, init.ExpiresAt, init.Used)
	}
	return append(args, d.Stale, d.Stage, stagesArg(d.Stages)), nil
}

// redeem runs a redemption statement and reports whether it wrote the
// records (a recorded one writes nothing on a replay).
func (s *Store) redeem(ctx context.Context, sql string, args []any, d *service.DelegationRecord, cred *service.CredentialRecord, init *service.InitRecord) (bool, error) {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if isUniqueViolation(err) {
		// A retry of a Redeem that committed finds its own record.
		table, hash := "agentpass_service_credentials", ""
		if cred != nil {
			hash = cred.Hash
		} else {
			table, hash = "agentpass_service_init_tokens", init.Hash
		}
		var mine bool
		err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE hash = $1 AND authorization_id = $2)`,
			hash, d.AuthorizationID).Scan(&mine)
		switch {
		case err != nil:
			return false, fmt.Errorf("servicepg: Redeem: %w", err)
		case mine:
			return true, nil
		}
		return false, fmt.Errorf("servicepg: Redeem: %w", service.ErrConflict)
	}
	if err != nil {
		return false, fmt.Errorf("servicepg: Redeem: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SharesReplayCache implements service.ProofRecordingStore: c must be the
// dpoppg cache on this store's own pool (a cache on another pool, even of
// the same database, is not folded into).
func (s *Store) SharesReplayCache(c dpop.ReplayCache) bool {
	pool, _, ok := pgreplay.Of(c)
	return ok && pool == s.pool
}

// RedeemRecorded implements service.ProofRecordingStore with ONE statement:
// the replay claim (dpoppg's key, statement and clock) and Redeem's
// inserts as data-modifying CTEs, the inserts conditional on the claim, so
// a replayed proof never yields a credential and a redemption costs one
// round trip instead of two.
func (s *Store) RedeemRecorded(ctx context.Context, c dpop.ReplayCache, d *service.DelegationRecord, cred *service.CredentialRecord,
	init *service.InitRecord, record func(dpop.ReplayCache) error) error {
	pool, now, ok := pgreplay.Of(c)
	if !ok || pool != s.pool {
		return errors.New("servicepg: RedeemRecorded: the replay cache is not on this store's pool")
	}
	args, err := redeemArgs(d, cred, init)
	if err != nil {
		return err
	}
	r := &recordedRedeem{s: s, now: now, args: args, d: d, cred: cred, init: init}
	err = record(r)
	switch {
	case r.err != nil:
		return r.err // the statement failed: nothing was stored
	case err != nil:
		return err
	case !r.written:
		return errors.New("servicepg: RedeemRecorded: record stored no pair")
	}
	return nil
}

// recordedRedeem is the replay cache RedeemRecorded hands to record: its
// one Seen runs the whole redemption.
type recordedRedeem struct {
	s       *Store
	now     func() time.Time
	args    []any
	d       *service.DelegationRecord
	cred    *service.CredentialRecord
	init    *service.InitRecord
	called  bool
	written bool
	err     error
}

func (r *recordedRedeem) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	if r.called {
		r.err = errors.New("servicepg: RedeemRecorded: a second pair to record")
		return false, r.err
	}
	r.called = true
	sql, claimArgs, _ := pgreplay.Statement(issuer, jti, exp, r.now())
	past := sql != pgreplay.SeenSQL // only looked up, as dpoppg.Seen does
	args := append(r.args, claimArgs...)
	written, err := r.s.redeem(ctx, recordedSQL[b2i(past)][b2i(r.init != nil)], args, r.d, r.cred, r.init)
	if err != nil {
		r.err = err
		return false, err
	}
	r.written = written
	return !written, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ConsumeInit implements service.Store with ONE conditional UPDATE that
// marks the token used (so at most one of any number of concurrent callers
// gets it); expiry is judged from the returned row, so an expired token is
// used up as well. When the UPDATE matches nothing, a read tells an unknown
// token from a used one.
func (s *Store) ConsumeInit(ctx context.Context, hash string, now time.Time) (*service.InitRecord, error) {
	r := service.InitRecord{Hash: hash, Used: true}
	var scope []string
	err := s.pool.QueryRow(ctx, `
		UPDATE agentpass_service_init_tokens SET used = true WHERE hash = $1 AND NOT used
		RETURNING authorization_id, scope, destination, created_at, expires_at`, hash).
		Scan(&r.AuthorizationID, &scope, &r.Destination, &r.CreatedAt, &r.ExpiresAt)
	switch {
	case err == nil:
		r.Scope = scopeOf(scope)
		r.CreatedAt, r.ExpiresAt = r.CreatedAt.UTC(), r.ExpiresAt.UTC()
		if !r.ExpiresAt.After(now) {
			return nil, service.ErrInitExpired
		}
		return &r, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("servicepg: ConsumeInit: %w", err)
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM agentpass_service_init_tokens WHERE hash = $1)`, hash).Scan(&exists); err != nil {
		return nil, fmt.Errorf("servicepg: ConsumeInit: %w", err)
	}
	if exists {
		return nil, service.ErrInitUsed
	}
	return nil, service.ErrNotFound
}

// AddCredential implements service.Store in one statement: the INSERT
// selects from the delegation, so it happens only when the delegation
// exists and is not invalidated; the same statement reports whether the
// delegation exists, to tell ErrNotFound from ErrConflict.
func (s *Store) AddCredential(ctx context.Context, c *service.CredentialRecord) error {
	if c == nil || c.Hash == "" {
		return errors.New("servicepg: AddCredential: empty credential hash")
	}
	var inserted, exists bool
	err := s.pool.QueryRow(ctx, `
		WITH ins AS (
			INSERT INTO agentpass_service_credentials (hash, kind, authorization_id, scope, jkt, created_at, expires_at)
			SELECT $1::text, $2::text, authorization_id, $4::text[], $5::text, $6::timestamptz, $7::timestamptz
			FROM agentpass_service_delegations WHERE authorization_id = $3::text AND NOT invalidated
			RETURNING 1
		)
		SELECT EXISTS (SELECT 1 FROM ins),
			EXISTS (SELECT 1 FROM agentpass_service_delegations WHERE authorization_id = $3::text)`,
		c.Hash, string(c.Kind), c.AuthorizationID, scopeArg(c.Scope), c.JKT, c.CreatedAt, c.ExpiresAt).Scan(&inserted, &exists)
	switch {
	case isUniqueViolation(err):
		return fmt.Errorf("servicepg: credential %w", service.ErrConflict)
	case err != nil:
		return fmt.Errorf("servicepg: AddCredential: %w", err)
	case inserted:
		return nil
	case exists:
		return fmt.Errorf("servicepg: delegation invalidated: %w", service.ErrConflict)
	}
	return service.ErrNotFound
}

// Credential implements service.Store: the credential and its delegation
// in one query (a JOIN), so an invalidation made by any replica is seen at
// once.
func (s *Store) Credential(ctx context.Context, hash string, now time.Time) (*service.CredentialRecord, *service.DelegationRecord, error) {
	var c service.CredentialRecord
	var kind string
	var scope []string
	d, err := scanDelegation(s.pool.QueryRow(ctx, `
		SELECT `+credentialColumns+`, `+delegationColumns+`
		FROM agentpass_service_credentials c
		JOIN agentpass_service_delegations d ON d.authorization_id = c.authorization_id
		WHERE c.hash = $1 AND c.expires_at > $2`, hash, now),
		&c.Hash, &kind, &c.AuthorizationID, &scope, &c.JKT, &c.CreatedAt, &c.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, service.ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("servicepg: Credential: %w", err)
	}
	c.Kind, c.Scope = service.CredentialKind(kind), scopeOf(scope)
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
	return &c, d, nil
}

// Delegation implements service.Store.
func (s *Store) Delegation(ctx context.Context, authorizationID string) (*service.DelegationRecord, error) {
	d, err := scanDelegation(s.pool.QueryRow(ctx, `
		SELECT `+delegationColumns+` FROM agentpass_service_delegations d WHERE d.authorization_id = $1`, authorizationID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, service.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("servicepg: Delegation: %w", err)
	}
	return d, nil
}

// RecordCheck implements service.Store in one statement: a conditional
// UPDATE of a delegation that is not invalidated (CheckedAt only moves
// later, ExpiresAt only earlier), and whether the delegation exists.
func (s *Store) RecordCheck(ctx context.Context, authorizationID string, at time.Time, scope pass.Scope, expiresAt time.Time) error {
	var exists bool
	err := s.pool.QueryRow(ctx, `
		WITH u AS (
			UPDATE agentpass_service_delegations
			SET checked_at = greatest(checked_at, $2::timestamptz),
				current_scope = $3::text[],
				stale = false,
				expires_at = CASE
					WHEN $4::timestamptz IS NULL THEN expires_at
					WHEN expires_at IS NULL OR $4::timestamptz < expires_at THEN $4::timestamptz
					ELSE expires_at END
			WHERE authorization_id = $1 AND NOT invalidated
			RETURNING 1
		)
		SELECT EXISTS (SELECT 1 FROM u) OR EXISTS (SELECT 1 FROM agentpass_service_delegations WHERE authorization_id = $1)`,
		authorizationID, ts(at), scopeArg(scope), ts(expiresAt)).Scan(&exists)
	if err != nil {
		return fmt.Errorf("servicepg: RecordCheck: %w", err)
	}
	if !exists {
		return service.ErrNotFound
	}
	return nil
}

// RecordMissionCheck implements service.Store in one statement: the
// version comparison and both outcomes (apply, or only narrow) are one
// conditional UPDATE, so two replicas applying answers of different
// versions end with the newer one whatever their order.
func (s *Store) RecordMissionCheck(ctx context.Context, authorizationID string, c service.MissionCheck) (bool, error) {
	var exists, applied bool
	err := s.pool.QueryRow(ctx, `
		WITH u AS (
			UPDATE agentpass_service_delegations
			SET checked_at = greatest(checked_at, $2::timestamptz),
				current_scope = CASE
					WHEN $3::text[] IS NULL THEN current_scope
					WHEN $6::bigint >= mission_version THEN $3::text[]
					ELSE ARRAY(SELECT v FROM unnest(current_scope) WITH ORDINALITY AS t(v, i)
						WHERE v = ANY($3::text[]) ORDER BY i) END,
				expires_at = CASE
					WHEN $4::timestamptz IS NULL THEN expires_at
					WHEN expires_at IS NULL OR $4::timestamptz < expires_at THEN $4::timestamptz
					ELSE expires_at END,
				mission_state = CASE WHEN $6::bigint >= mission_version THEN $5::text ELSE mission_state END,
				stale = stale AND $6::bigint < mission_version,
				mission_stage = CASE WHEN $6::bigint >= mission_version AND $7::text <> '' THEN $7::text ELSE mission_stage END,
				mission_version = greatest(mission_version, $6::bigint)
			WHERE authorization_id = $1 AND NOT invalidated
			RETURNING ($6::bigint >= mission_version) AS applied
		)
		SELECT COALESCE((SELECT applied FROM u), false),
			EXISTS (SELECT 1 FROM agentpass_service_delegations WHERE authorization_id = $1)`,
		authorizationID, ts(c.At), scopeArg(c.Scope), ts(c.ExpiresAt), string(c.State), c.Version, c.Stage).Scan(&applied, &exists)
	if err != nil {
		return false, fmt.Errorf("servicepg: RecordMissionCheck: %w", err)
	}
	if !exists {
		return false, service.ErrNotFound
	}
	return applied, nil
}

// Invalidate implements service.Store: one statement flips the delegation
// row (keeping the first reason and time), which every credential lookup
// joins, so every credential and initialization token of the delegation
// stops working at once for every replica.
func (s *Store) Invalidate(ctx context.Context, authorizationID string, at time.Time, reason string) error {
	var exists bool
	err := s.pool.QueryRow(ctx, `
		WITH u AS (
			UPDATE agentpass_service_delegations
			SET invalidated = true, invalidated_at = $2, invalid_reason = $3
			WHERE authorization_id = $1 AND NOT invalidated
			RETURNING 1
		)
		SELECT EXISTS (SELECT 1 FROM u) OR EXISTS (SELECT 1 FROM agentpass_service_delegations WHERE authorization_id = $1)`,
		authorizationID, ts(at), reason).Scan(&exists)
	if err != nil {
		return fmt.Errorf("servicepg: Invalidate: %w", err)
	}
	if !exists {
		return service.ErrNotFound
	}
	return nil
}

// InvalidateTree implements service.Store in one statement: the UPDATE
// flips the delegation and every not yet invalidated delegation of the same
// authority whose ancestors contain its mission (found through the GIN
// index on ancestors), so no replica ever sees the parent ended and a
// child alive.
func (s *Store) InvalidateTree(ctx context.Context, authorizationID string, at time.Time, reason string) (int, error) {
	var (
		n      int
		exists bool
	)
	err := s.pool.QueryRow(ctx, `
		WITH root AS (
			SELECT authorization_id, authority, configuration_url, mission_id FROM agentpass_service_delegations WHERE authorization_id = $1
		), u AS (
			UPDATE agentpass_service_delegations d
			SET invalidated = true, invalidated_at = $2,
				invalid_reason = CASE WHEN d.authorization_id = r.authorization_id THEN $3 ELSE 'cascade: ' || $3 END
			FROM root r
			WHERE NOT d.invalidated AND (d.authorization_id = r.authorization_id
				OR r.mission_id <> '' AND d.authority = r.authority AND d.configuration_url = r.configuration_url
					AND d.ancestors @> ARRAY[r.mission_id]
					AND cardinality(d.ancestors) > 0)
			RETURNING 1
		)
		SELECT (SELECT count(*) FROM u), EXISTS (SELECT 1 FROM root)`,
		authorizationID, ts(at), reason).Scan(&n, &exists)
	if err != nil {
		return 0, fmt.Errorf("servicepg: InvalidateTree: %w", err)
	}
	if !exists {
		return 0, service.ErrNotFound
	}
	return n, nil
}

// ApplyEvent implements service.Store in one transaction: one conditional
// UPDATE decides and applies the event (the version guard and the mission
// match are in its WHERE clause, so concurrent deliveries to several
// replicas apply it at most once), then, for a mission's end, one
// UPDATE invalidates its other delegations and its descendants'. Every replica reads the delegation row with each request,
// so all of them refuse as soon as the transaction commits.
func (s *Store) ApplyEvent(ctx context.Context, e service.MissionEvent) (bool, error) {
	if e.Action < service.EventRevoke || e.Action > service.EventRecheck {
		return false, fmt.Errorf("servicepg: ApplyEvent: unknown action %d", e.Action)
	}
	var applied bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		applied = false
		var mission, cfgURL string
		err := tx.QueryRow(ctx, `
			UPDATE agentpass_service_delegations SET
				invalidated = invalidated OR $5::int IN (1, 2),
				invalidated_at = CASE WHEN $5::int IN (1, 2) THEN $7::timestamptz ELSE invalidated_at END,
				invalid_reason = CASE WHEN $5::int IN (1, 2) THEN $8::text ELSE invalid_reason END,
				mission_state = CASE WHEN $5::int = 3 THEN 'suspended' ELSE mission_state END,
				current_scope = CASE WHEN $5::int = 4 THEN
					ARRAY(SELECT v FROM unnest(current_scope) WITH ORDINALITY AS t(v, i)
						WHERE v = ANY($6::text[]) ORDER BY i)
					ELSE current_scope END,
				mission_stage = CASE WHEN $5::int = 4 AND $9::text <> '' AND COALESCE($6::text[] <@ current_scope, false)
					THEN $9::text ELSE mission_stage END,
				stale = stale OR $5::int = 5
					OR (mission_version > 0 AND $4::bigint > mission_version + 1)
					OR ($5::int = 4 AND NOT COALESCE($6::text[] <@ current_scope, false)),
				mission_version = CASE WHEN $4::bigint > 0 AND $5::int <> 5 THEN $4::bigint ELSE mission_version END
			WHERE authorization_id = $1 AND authority = $2 AND NOT invalidated
				AND ($3::text = '' OR mission_id = '' OR mission_id = $3::text)
				AND CASE WHEN $4::bigint = 0 THEN $5::int IN (1, 2, 4) ELSE $4::bigint > mission_version END
			RETURNING mission_id, configuration_url`,
			e.AuthorizationID, e.Authority, e.MissionID, e.Version, int(e.Action), scopeArg(e.Scope), ts(e.At), e.Reason, e.Stage).Scan(&mission, &cfgURL)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM agentpass_service_delegations
				WHERE authorization_id = $1 AND authority = $2)`, e.AuthorizationID, e.Authority).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return service.ErrNotFound
			}
			return nil
		case err != nil:
			return err
		}
		applied = true
		if e.Action != service.EventEnd || mission == "" {
			return nil
		}
		// The mission's other delegations here and its descendants' (the
		// GIN index on ancestors finds them) end with it: those of the
		// same Authority as found (identifier and configuration URL),
		// since another configuration may claim the same identifier.
		_, err = tx.Exec(ctx, `
			UPDATE agentpass_service_delegations
			SET invalidated = true, invalidated_at = $3, invalid_reason = 'cascade: ' || $4
			WHERE authority = $1 AND configuration_url = $5 AND NOT invalidated
				AND (mission_id = $2 OR ancestors @> ARRAY[$2::text] AND cardinality(ancestors) > 0)`,
			e.Authority, mission, ts(e.At), e.Reason, cfgURL)
		return err
	})
	switch {
	case errors.Is(err, service.ErrNotFound):
		return false, service.ErrNotFound
	case err != nil:
		return false, fmt.Errorf("servicepg: ApplyEvent: %w", err)
	}
	return applied, nil
}

// SavePendingClose implements service.Store.
func (s *Store) SavePendingClose(ctx context.Context, p *service.PendingClose) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO agentpass_service_pending_closes
			(authorization_id, authority, configuration_url, trust_mode, reason, attempts, next_attempt, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (authorization_id) DO UPDATE SET
			authority = EXCLUDED.authority, configuration_url = EXCLUDED.configuration_url,
			trust_mode = EXCLUDED.trust_mode, reason = EXCLUDED.reason, attempts = EXCLUDED.attempts,
			next_attempt = EXCLUDED.next_attempt, expires_at = EXCLUDED.expires_at`,
		p.AuthorizationID, p.Authority, p.ConfigurationURL, string(p.TrustMode), p.Reason, p.Attempts,
		ts(p.NextAttempt), ts(p.ExpiresAt))
	if err != nil {
		return fmt.Errorf("servicepg: SavePendingClose: %w", err)
	}
	return nil
}

// DuePendingCloses implements service.Store.
func (s *Store) DuePendingCloses(ctx context.Context, now time.Time, limit int) ([]*service.PendingClose, error) {
	if limit <= 0 {
		limit = defaultPruneLimit
	}
	rows, err := s.pool.Query(ctx, `
		SELECT authorization_id, authority, configuration_url, trust_mode, reason, attempts, next_attempt, expires_at
		FROM agentpass_service_pending_closes WHERE next_attempt <= $1
		ORDER BY next_attempt, authorization_id LIMIT $2`, ts(now), limit)
	if err != nil {
		return nil, fmt.Errorf("servicepg: DuePendingCloses: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*service.PendingClose, error) {
		var (
			p         service.PendingClose
			mode      string
			next, exp pgtype.Timestamptz
		)
		if err := row.Scan(&p.AuthorizationID, &p.Authority, &p.ConfigurationURL, &mode, &p.Reason, &p.Attempts, &next, &exp); err != nil {
			return nil, err
		}
		p.TrustMode, p.NextAttempt, p.ExpiresAt = pass.TrustMode(mode), tm(next), tm(exp)
		return &p, nil
	})
	if err != nil {
		return nil, fmt.Errorf("servicepg: DuePendingCloses: %w", err)
	}
	return out, nil
}

// DeletePendingClose implements service.Store.
func (s *Store) DeletePendingClose(ctx context.Context, authorizationID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM agentpass_service_pending_closes WHERE authorization_id = $1`, authorizationID); err != nil {
		return fmt.Errorf("servicepg: DeletePendingClose: %w", err)
	}
	return nil
}

// Prune deletes, at most limit rows per table per call (zero means
// 1,000), so each statement's work is bounded: credentials
// expired at now, initialization tokens expired more than ten minutes
// before now, and the delegations those credentials and tokens belonged to
// once nothing refers to them any more (as service.MemoryStore does). It
// reports how many rows it deleted.
func (s *Store) Prune(ctx context.Context, now time.Time, limit int) (int64, error) {
	if limit <= 0 {
		limit = defaultPruneLimit
	}
	// Each batch is fetched by the expiry index and deleted by primary key
	// ("= ANY (ARRAY (subquery))"), so the work is bounded by limit however
	// large the backlog. Credentials and tokens never get a later expiry,
	// so an expired row needs no re-check.
	var total int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		total = 0
		var ids []string
		for _, q := range []struct {
			table  string
			cutoff time.Time
		}{
			{"agentpass_service_credentials", now},
			{"agentpass_service_init_tokens", now.Add(-initRetention)},
		} {
			rows, err := tx.Query(ctx, `
				DELETE FROM `+q.table+` WHERE hash = ANY (ARRAY (
					SELECT hash FROM `+q.table+` WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2))
				RETURNING authorization_id`, q.cutoff, limit)
			if err != nil {
				return err
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			ids = append(ids, got...)
			total += int64(len(got))
		}
		if len(ids) == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, `
			DELETE FROM agentpass_service_delegations d
			WHERE d.authorization_id = ANY($1::text[])
				AND NOT EXISTS (SELECT 1 FROM agentpass_service_credentials c WHERE c.authorization_id = d.authorization_id)
				AND NOT EXISTS (SELECT 1 FROM agentpass_service_init_tokens i WHERE i.authorization_id = d.authorization_id)`, ids)
		total += tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("servicepg: Prune: %w", err)
	}
	return total, nil
}

// RunJanitor prunes at once and then every interval (zero means one
// minute) until ctx is done, and returns ctx's error. Each tick calls Prune
// batch after batch until the backlog is gone or the tick has run for
// interval, so the janitor keeps up with any number of credentials
// expiring per second (one batch per tick would fall behind for good). A
// failing prune, or a tick that did not catch up, is logged (WithLogger).
// Concurrent janitors on several replicas are safe, merely redundant.
func (s *Store) RunJanitor(ctx context.Context, interval time.Duration) error {
	return pgutil.RunJanitor(ctx, interval, s.logger, component, func(ctx context.Context, limit int) (int64, error) {
		return s.Prune(ctx, s.now(), limit)
	})
}

// scanDelegation scans the delegation columns after the given leading
// destinations.
func scanDelegation(row pgx.Row, lead ...any) (*service.DelegationRecord, error) {
	var (
		d                                      service.DelegationRecord
		trust                                  string
		scope, current                         []string
		expires, created, checked, invalidated pgtype.Timestamptz
		missionState                           string
		chain                                  []byte
		ancestors                              []string
		stages                                 pgtype.Text
	)
	dest := append(lead, &d.AuthorizationID, &d.Authority, &d.ConfigurationURL, &trust, &d.User, &d.Agent,
		&d.HarnessID, &d.Task.ID, &d.Task.Description, &d.Task.Attested, &scope, &current,
		&expires, &created, &checked, &d.Invalidated, &invalidated, &d.InvalidReason,
		&d.MissionID, &d.MissionVersion, &missionState, &chain, &ancestors, &d.Stale, &d.Stage, &stages)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	if len(chain) > 0 {
		if err := json.Unmarshal(chain, &d.Chain); err != nil {
			return nil, fmt.Errorf("servicepg: delegation chain: %w", err)
		}
	}
	if len(ancestors) > 0 {
		d.Ancestors = ancestors
	}
	if stages.Valid {
		if err := json.Unmarshal([]byte(stages.String), &d.Stages); err != nil {
			return nil, fmt.Errorf("servicepg: mission_stages: %w", err)
		}
	}
	d.TrustMode, d.MissionState = pass.TrustMode(trust), pass.MissionState(missionState)
	d.Scope, d.CurrentScope = scopeOf(scope), scopeOf(current)
	d.ExpiresAt, d.CreatedAt, d.CheckedAt, d.InvalidatedAt = tm(expires), tm(created), tm(checked), tm(invalidated)
	return &d, nil
}

// stagesArg is the mission_stages column: the plan as JSON text, NULL
// without one.
func stagesArg(st []pass.Stage) pgtype.Text {
	if len(st) == 0 {
		return pgtype.Text{}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return pgtype.Text{} // a plan of strings always encodes
	}
	return pgtype.Text{String: string(b), Valid: true}
}

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

// chainArg is the chain as jsonb, NULL when empty.
func chainArg(c []pass.Actor) []byte {
	if len(c) == 0 {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil // a []pass.Actor always marshals
	}
	return b
}

func ancestorsArg(a []string) []string {
	if a == nil {
		return []string{}
	}
	return a
}

func scopeOf(s []string) pass.Scope {
	if s == nil {
		return nil
	}
	return pass.Scope(s)
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
