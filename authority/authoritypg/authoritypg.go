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
	"github.com/agentpass-go/agentpass/internal/foldmark"
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

// defaultRetention is how long Prune keeps a record after it can no longer
// change (a request expired, decided and dead, or consumed; an
// authorization closed or expired), so that late polls and checks get a
// precise answer rather than "unknown". It matches
// the MemoryStore default.
const defaultRetention = time.Hour

// defaultPruneLimit is the per-table batch of Prune when given zero (the
// batch RunJanitor uses too).
const defaultPruneLimit = 1000

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
	// mark tells the Authority this Store from a value embedding it, which
	// may override what ConsumePassRecorded would bypass.
	mark
	pool      *pgxpool.Pool
	retention time.Duration
	keep      authority.Retention
	logger    *slog.Logger
	now       func() time.Time
	known     *knownPasses // nil: none remembered
}

var _ authority.Store = (*Store)(nil)

// mark is embedded under an unexported name: it adds nothing to the API.
type mark = foldmark.Mark

// Option configures a Store.
type Option func(*Store)

// WithRetention sets how long Prune keeps records that can no longer change
// (default one hour; d <= 0 keeps the default).
func WithRetention(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.retention = d
		}
	}
}

// WithRetentionPolicy sets the retention per kind of record (see
// authority.Retention: decided requests with their missions and histories
// may be kept Forever, undecided ones never are); it overrides
// WithRetention for the fields it sets.
func WithRetentionPolicy(k authority.Retention) Option {
	return func(s *Store) { s.keep = k }
}

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
	s := &Store{pool: pool, retention: defaultRetention, now: time.Now, known: newKnownPasses(defaultKnownPasses)}
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
		return fmt.Errorf("authoritypg: %w", err)
	}
	return nil
}

// Column lists, in the order the scan functions read them.
const (
	requestColumns = `id, status, created_at, expires_at, type, service, user_email, harness_id, cnf,
		agent_id, tier, attestation_issuer, task_id, task_description, task_attested, destination_url,
		available_scope, proposed_scope, proposed_by, parent_mission_id,
		decision_status, decided_by, decided_at, decision_reason, decision_scope, pass_expires_at,
		authorization_expires_at, pass_hash, consumed_at, authorization_id,
		id_hash, state, version, activated_at, scope, ended_at, ended_by, ended_cause, ended_reason,
		history_head, history_count, hardened_binding, decision_max_depth, decision_max_children,
		stage_plan, requested_scope, scope_plan, decision_scope_basis, decision_disclosure`
	authorizationColumns = `id, mission_id, state, service, type, user_email, agent_id,
		harness_id, cnf, tier, task_id, task_description, task_attested, destination_url,
		granted_scope, scope, created_at, expires_at,
		approval_status, approval_by, approval_at, approval_reason, approval_scope,
		approval_pass_expires_at, approval_authorization_expires_at,
		updated_at, state_by, state_reason, closed_at, hardened_binding`
)

// CreateRequest implements authority.Store in one transaction: the row and
// the mission's first history records. The row of an approved root pass is
// remembered as stored (see WithKnownPasses).
func (s *Store) CreateRequest(ctx context.Context, r *authority.Request) error {
	if r == nil {
		return errors.New("authoritypg: CreateRequest: nil request")
	}
	c := r.Clone()
	recs, err := c.StartMission()
	if err != nil {
		return err
	}
	var stored *authority.Request
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if stored, err = insertRequest(ctx, tx, c, s.known != nil && knowable(c)); err != nil {
			return err
		}
		return insertHistory(ctx, tx, c.MissionID, recs...)
	})
	if isUniqueViolation(err) {
		return authority.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("authoritypg: CreateRequest: %w", err)
	}
	s.known.put(stored, c.CreatedAt)
	*r = *c
	return nil
}

// insertRequest inserts r and, when returning is set, answers the row as
// stored (times truncated as a read would find them), in the same round
// trip.
func insertRequest(ctx context.Context, tx pgx.Tx, r *authority.Request, returning bool) (*authority.Request, error) {
	dec := decisionOf(r)
	decStatus, decidedBy, decReason := dec.status, dec.by, dec.reason
	decidedAt, passExp, authzExp, decScope := dec.at, dec.passExp, dec.authzExp, dec.scope
	maxDepth, maxChildren := dec.maxDepth, dec.maxChildren
	e := endOf(r)
	plan, err := stagePlanArg(r)
	if err != nil {
		return nil, err
	}
	splan, err := scopePlanOf(r)
	if err != nil {
		return nil, err
	}
	insert := `
		INSERT INTO agentpass_authority_requests (` + requestColumns + `, ends_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
			$21, $22, $23, $24, $25, $26, $27, $28, $29, $30,
			$31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43, $44, $45, $46, $47, $48, $49, $50)`
	if returning {
		insert += ` RETURNING ` + requestColumns
	}
	args := []any{r.MissionID, string(r.Status), ts(r.CreatedAt), ts(r.ExpiresAt), string(r.Type), r.Service, r.User, r.HarnessID, jsonArg(r.Cnf),
		r.AgentID, string(r.Tier), r.AttestationIssuer, r.TaskID, r.TaskDescription, r.TaskAttested, r.DestinationURL,
		scopeArg(r.AvailableScope), scopeArg(r.ProposedScope), r.ProposedBy, r.ParentMissionID,
		decStatus, decidedBy, decidedAt, decReason, decScope, passExp,
		authzExp, textArg(r.PassHash), ts(r.ConsumedAt), textArg(r.AuthorizationID),
		r.IDHash, string(r.State), r.Version, ts(r.ActivatedAt), scopeArg(r.Scope), e.at, e.by, e.cause, e.reason,
		r.HistoryHead, r.HistoryCount, r.HardenedBinding, maxDepth, maxChildren, plan,
		scopeArg(r.RequestedScope), splan, dec.scopeBasis, dec.disclosure, endsAt(r)}
	if returning {
		return scanRequest(tx.QueryRow(ctx, insert, args...))
	}
	_, err = tx.Exec(ctx, insert, args...)
	return nil, err
}

// endsAt is the row's ends_at, from which Prune counts the retention:
// r.EndsAt(), except that an approved mission that has not ended keeps the
// later of its pass's and its authorization's expiry from the approval on.
// A consumption then leaves the column as it is (the end it would set,
// the authorization's expiry or the consumption, is never later), so the
// update that consumes a pass changes no indexed column. An unredeemed
// pass's row is only kept longer.
func endsAt(r *authority.Request) time.Time {
	end := r.EndsAt()
	if d := r.Decision; r.Ended == nil && r.Status == pass.StatusApproved && d != nil {
		end = maxTime(end, d.PassExpiresAt, d.AuthorizationExpiresAt)
	}
	return end
}

func maxTime(t time.Time, more ...time.Time) time.Time {
	for _, u := range more {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// decision is a request's decision as column values (all NULL or empty
// while pending).
type decision struct {
	status                pgtype.Text
	by, reason            string
	at, passExp, authzExp pgtype.Timestamptz
	scope                 []string
	maxDepth, maxChildren int
	scopeBasis            string
	disclosure            string
}

func decisionOf(r *authority.Request) decision {
	d := r.Decision
	if d == nil {
		return decision{}
	}
	return decision{
		status: pgtype.Text{String: string(d.Status), Valid: true}, by: d.DecidedBy, reason: d.Reason,
		at: ts(d.DecidedAt), passExp: ts(d.PassExpiresAt), authzExp: ts(d.AuthorizationExpiresAt), scope: scopeArg(d.Scope),
		maxDepth: d.MaxDepth, maxChildren: d.MaxChildren, scopeBasis: d.ScopeDecision, disclosure: d.DisclosureSHA256,
	}
}

type ending struct {
	at                pgtype.Timestamptz
	by, cause, reason string
}

func endOf(r *authority.Request) ending {
	if r.Ended == nil {
		return ending{}
	}
	return ending{ts(r.Ended.At), r.Ended.By, r.Ended.Cause, r.Ended.Reason}
}

// writeMission writes back everything a mission transition may change.
func writeMission(ctx context.Context, tx pgx.Tx, r *authority.Request) error {
	dec := decisionOf(r)
	decStatus, decidedBy, decReason := dec.status, dec.by, dec.reason
	decidedAt, passExp, authzExp, decScope := dec.at, dec.passExp, dec.authzExp, dec.scope
	maxDepth, maxChildren := dec.maxDepth, dec.maxChildren
	e := endOf(r)
	plan, err := stagePlanArg(r)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `
		UPDATE agentpass_authority_requests
		SET status = $2, decision_status = $3, decided_by = $4, decided_at = $5, decision_reason = $6,
			decision_scope = $7, pass_expires_at = $8, authorization_expires_at = $9,
			state = $10, version = $11, activated_at = $12, scope = $13, ended_at = $14, ended_by = $15,
			ended_cause = $16, ended_reason = $17, history_head = $18, history_count = $19,
			consumed_at = $20, authorization_id = $21, ends_at = $22,
			decision_max_depth = $23, decision_max_children = $24, stage_plan = $25,
			decision_scope_basis = $26, decision_disclosure = $27
		WHERE id = $1`,
		r.MissionID, string(r.Status), decStatus, decidedBy, decidedAt, decReason, decScope, passExp, authzExp,
		string(r.State), r.Version, ts(r.ActivatedAt), scopeArg(r.Scope), e.at, e.by, e.cause, e.reason,
		r.HistoryHead, r.HistoryCount, ts(r.ConsumedAt), textArg(r.AuthorizationID), endsAt(r), maxDepth, maxChildren, plan,
		dec.scopeBasis, dec.disclosure)
	return err
}

func insertHistory(ctx context.Context, tx pgx.Tx, missionID string, recs ...authority.HistoryRecord) error {
	for _, rec := range recs {
		if _, err := tx.Exec(ctx, `INSERT INTO agentpass_authority_mission_history (mission_id, seq, body, hash)
			VALUES ($1, $2, $3, $4)`, missionID, rec.Seq, rec.Body, rec.Hash); err != nil {
			return err
		}
	}
	return nil
}

// CreateChild implements authority.Store in one transaction. It locks the
// chain from the root down, as TransitionMission does (the mission, then
// its descendants), so the two never deadlock: ancestors FOR SHARE, the
// parent FOR UPDATE. A revocation of any of them either commits first (and
// the creation sees it) or waits for the child to commit (and its cascade
// finds the child). The parent's lock also serialises creations under it,
// so the live-children count cannot change before the insert commits.
func (s *Store) CreateChild(ctx context.Context, r *authority.Request, now time.Time) error {
	if r == nil || r.ParentMissionID == "" {
		return errors.New("authoritypg: CreateChild: no parent")
	}
	c := r.Clone()
	recs, err := c.StartMission()
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			WITH RECURSIVE up(id, parent, depth) AS (
				SELECT id, parent_mission_id, 0 FROM agentpass_authority_requests WHERE id = $1
				UNION ALL
				SELECT r.id, r.parent_mission_id, u.depth + 1 FROM agentpass_authority_requests r JOIN up u ON r.id = u.parent
				WHERE u.parent <> '' AND u.depth < 32
			)
			SELECT id FROM up ORDER BY depth DESC`, c.ParentMissionID)
		if err != nil {
			return err
		}
		chain, err := pgx.CollectRows(rows, pgx.RowTo[string]) // root first, parent last
		if err != nil {
			return err
		}
		if len(chain) == 0 {
			return authority.ErrNotFound
		}
		var ancestors []*authority.Request // parent's parent first
		for _, id := range chain[:len(chain)-1] {
			a, err := scanRequest(tx.QueryRow(ctx, `SELECT `+requestColumns+` FROM agentpass_authority_requests WHERE id = $1 FOR SHARE`, id))
			if err != nil {
				return err
			}
			ancestors = append([]*authority.Request{a}, ancestors...)
		}
		parent, err := lockMission(ctx, tx, chain[len(chain)-1])
		if err != nil {
			return err
		}
		if top := parent; len(ancestors) > 0 {
			top = ancestors[len(ancestors)-1]
			if top.ParentMissionID != "" {
				return authority.ErrState // a pruned or too deep chain cannot be confirmed active
			}
		} else if top.ParentMissionID != "" {
			return authority.ErrState
		}
		var live int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM agentpass_authority_requests
			WHERE parent_mission_id = $1 AND state IN ('pending', 'active', 'suspended')`, parent.MissionID).Scan(&live); err != nil {
			return err
		}
		if err := c.CheckParent(parent, ancestors, live, now); err != nil {
			return err
		}
		if _, err := insertRequest(ctx, tx, c, false); err != nil {
			return err
		}
		return insertHistory(ctx, tx, c.MissionID, recs...)
	})
	switch {
	case isUniqueViolation(err):
		return authority.ErrConflict
	case err == nil:
	case isStoreError(err):
		return err
	default:
		return fmt.Errorf("authoritypg: CreateChild: %w", err)
	}
	*r = *c
	return nil
}

// RequestByIDHash implements authority.Store.
func (s *Store) RequestByIDHash(ctx context.Context, idHash string) (*authority.Request, error) {
	r, err := scanRequest(s.pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM agentpass_authority_requests WHERE id_hash = $1`, idHash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, authority.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("authoritypg: RequestByIDHash: %w", err)
	}
	return r, nil
}

// Missions implements authority.Store with a keyset page on
// (created_at, id).
func (s *Store) Missions(ctx context.Context, opts authority.MissionListOptions) ([]*authority.Request, error) {
	where := []string{"true"}
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if opts.User != "" {
		where = append(where, "lower(user_email) = lower("+arg(opts.User)+")")
	}
	if opts.Service != "" {
		where = append(where, "service = "+arg(opts.Service))
	}
	if opts.Parent != "" {
		where = append(where, "parent_mission_id = "+arg(opts.Parent))
	}
	if len(opts.States) > 0 {
		states := make([]string, len(opts.States))
		for i, st := range opts.States {
			states[i] = string(st)
		}
		where = append(where, "state = ANY("+arg(states)+")")
	}
	if opts.After != nil {
		where = append(where, "(created_at, id) > ("+arg(opts.After.CreatedAt)+", "+arg(opts.After.MissionID)+")")
	}
	rows, err := s.pool.Query(ctx, `SELECT `+requestColumns+` FROM agentpass_authority_requests
		WHERE `+strings.Join(where, " AND ")+` ORDER BY created_at, id LIMIT `+strconv.Itoa(opts.EffectiveLimit()), args...)
	if err != nil {
		return nil, fmt.Errorf("authoritypg: Missions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*authority.Request, error) { return scanRequest(row) })
	if err != nil {
		return nil, fmt.Errorf("authoritypg: Missions: %w", err)
	}
	return out, nil
}

// History implements authority.Store.
func (s *Store) History(ctx context.Context, missionID string) ([]authority.HistoryRecord, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM agentpass_authority_requests WHERE id = $1`, missionID).Scan(&n); err != nil {
		return nil, fmt.Errorf("authoritypg: History: %w", err)
	}
	if n == 0 {
		return nil, authority.ErrNotFound
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, body, hash FROM agentpass_authority_mission_history
		WHERE mission_id = $1 ORDER BY seq`, missionID)
	if err != nil {
		return nil, fmt.Errorf("authoritypg: History: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (authority.HistoryRecord, error) {
		var h authority.HistoryRecord
		err := row.Scan(&h.Seq, &h.Body, &h.Hash)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("authoritypg: History: %w", err)
	}
	return out, nil
}

// ancestorsOf reads the mission id and its ancestors inside tx, the
// mission first, in one statement.
func ancestorsOf(ctx context.Context, tx pgx.Tx, id string) ([]*authority.Request, error) {
	rows, err := tx.Query(ctx, `
		WITH RECURSIVE up(id, depth) AS (
			SELECT id, 0 FROM agentpass_authority_requests WHERE id = $1
			UNION ALL
			SELECT r.parent_mission_id, u.depth + 1 FROM agentpass_authority_requests r JOIN up u ON r.id = u.id
			WHERE r.parent_mission_id <> '' AND u.depth < 32
		)
		SELECT `+requestColumns+` FROM agentpass_authority_requests JOIN up USING (id) ORDER BY depth`, id)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*authority.Request, error) { return scanRequest(row) })
}

// lockMission reads a mission's row FOR UPDATE inside tx.
func lockMission(ctx context.Context, tx pgx.Tx, id string) (*authority.Request, error) {
	r, err := scanRequest(tx.QueryRow(ctx, `SELECT `+requestColumns+` FROM agentpass_authority_requests WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, authority.ErrNotFound
	}
	return r, err
}

// syncAuthorization makes the mission's authorization follow it.
// It returns the authorization after the change (nil when there is none).
func syncAuthorization(ctx context.Context, tx pgx.Tx, r *authority.Request, by, reason string, now time.Time) (*authority.Authorization, error) {
	if r.AuthorizationID == "" {
		return nil, nil
	}
	a, err := scanAuthorization(tx.QueryRow(ctx, `SELECT `+authorizationColumns+`
		FROM agentpass_authority_authorizations WHERE id = $1 FOR UPDATE`, r.AuthorizationID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !r.SyncAuthorization(a, by, reason, now) {
		return a, nil
	}
	end := a.ExpiresAt
	if !a.ClosedAt.IsZero() {
		end = a.ClosedAt
	}
	_, err = tx.Exec(ctx, `
		UPDATE agentpass_authority_authorizations
		SET state = $2, scope = $3, updated_at = $4, state_by = $5, state_reason = $6, closed_at = $7, ends_at = $8
		WHERE id = $1`,
		a.ID, string(a.State), scopeArg(a.Scope), ts(a.UpdatedAt), a.StateBy, a.StateReason, ts(a.ClosedAt), end)
	return a, err
}

// TransitionMission implements authority.Store in one transaction: the
// mission's row is locked, c.Apply decides, the row, its history record
// and its authorization are written, and every descendant (locked in turn,
// parents before children) gets c.Cascade, before the commit. Two replicas
// racing on one mission serialise on the row lock, so each committed
// change has exactly one version.
func (s *Store) TransitionMission(ctx context.Context, missionID string, c authority.MissionChange, now time.Time) (*authority.Request, error) {
	var out *authority.Request
	var refused []*authority.OutboxEvent
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		refused = nil
		root, err := lockMission(ctx, tx, missionID)
		if err != nil {
			return err
		}
		prior := root.Clone()
		rec, err := c.Apply(root, now)
		if err != nil {
			return err
		}
		if err := writeMission(ctx, tx, root); err != nil {
			return err
		}
		if err := insertHistory(ctx, tx, root.MissionID, rec); err != nil {
			return err
		}
		a, err := syncAuthorization(ctx, tx, root, c.By, c.Reason, now)
		if err != nil {
			return err
		}
		if ev, err := enqueueEvent(ctx, tx, c, root, root, prior, nil, a); err != nil {
			return err
		} else if ev != nil {
			refused = append(refused, ev)
		}
		rows, err := tx.Query(ctx, `
			WITH RECURSIVE descendants(id, depth) AS (
				SELECT id, 1 FROM agentpass_authority_requests WHERE parent_mission_id = $1
				UNION
				SELECT c.id, d.depth + 1 FROM agentpass_authority_requests c JOIN descendants d ON c.parent_mission_id = d.id
				WHERE d.depth < 32
			)
			SELECT id FROM descendants GROUP BY id ORDER BY min(depth), id`, missionID)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		// Each descendant's ancestors as they were before the change:
		// those locked here (parents come first), then root's own, read
		// only when the change can alter an effective scope. Any change
		// of those locks root, a descendant of theirs, so they cannot
		// move before this commits.
		priors := map[string]*authority.Request{root.MissionID: prior}
		var above []*authority.Request
		if len(ids) > 0 && (c.Scope != nil || c.Stage != nil) && root.ParentMissionID != "" {
			if above, err = ancestorsOf(ctx, tx, root.ParentMissionID); err != nil {
				return err
			}
		}
		for _, id := range ids {
			if id == missionID {
				continue
			}
			d, err := lockMission(ctx, tx, id)
			if errors.Is(err, authority.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			dprior := d.Clone()
			priors[id] = dprior
			var ancestors []*authority.Request
			p := d.ParentMissionID
			for a := priors[p]; a != nil && len(ancestors) < 32; a = priors[p] {
				ancestors = append(ancestors, a)
				p = a.ParentMissionID
			}
			if p == root.ParentMissionID {
				ancestors = append(ancestors, above...)
			}
			drec, changed, err := c.Cascade(root, d, ancestors, now)
			if err != nil || !changed {
				if err != nil {
					return err
				}
				continue
			}
			if err := writeMission(ctx, tx, d); err != nil {
				return err
			}
			if err := insertHistory(ctx, tx, d.MissionID, drec); err != nil {
				return err
			}
			da, err := syncAuthorization(ctx, tx, d, c.By, "an ancestor mission changed", now)
			if err != nil {
				return err
			}
			if ev, err := enqueueEvent(ctx, tx, c, root, d, dprior, ancestors, da); err != nil {
				return err
			} else if ev != nil {
				refused = append(refused, ev)
			}
		}
		out = root
		return nil
	})
	if err != nil {
		if isStoreError(err) {
			return nil, err
		}
		return nil, fmt.Errorf("authoritypg: TransitionMission: %w", err)
	}
	// The remembered row is out of date: its write would apply to nothing.
	s.known.drop(out.MissionID)
	if c.EventRefused != nil {
		for _, ev := range refused {
			c.EventRefused(ev)
		}
	}
	return out, nil
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

// RotatePass implements authority.Store with one conditional UPDATE. The
// row of a root pass is remembered as stored (see WithKnownPasses).
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
		if s.known != nil && knowable(r) {
			s.known.put(r.Clone(), now)
		}
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

// consumeAttempts bounds how often ConsumePass reads again after its
// write found the row changed since its read. Only a change to the same
// mission or an ancestor in between causes that; the next read sees it,
// and a consumed pass then ends the loop at once.
const consumeAttempts = 4

// ConsumePass implements authority.Store in two round trips (three for a
// sub-agent's pass), none in a transaction that waits for the network: one
// statement reads the request row holding the pass (and one more its
// ancestors, a recursive query a root pass does not need), Go decides (audience,
// consumption, expiry, the mission's effective state) and seals the
// "redeemed" history entry, and one statement writes the consumption, the
// authorization and the history entry, on the condition that the row and
// every ancestor are still as read. The write locks the ancestors FOR
// SHARE, root first, before the mission row, in the order TransitionMission
// and CreateChild lock them, so a concurrent suspension or end of an
// ancestor either committed before (the condition fails) or waits for the
// consumption (and its cascade finds the authorization). Two replicas
// racing for one pass serialise on its row: the second's condition
// (consumed_at IS NULL) fails, it reads again and gets ErrConsumed. A pass
// already consumed under authorizationID is a retry whose first answer was
// lost with its connection: it returns that authorization.
//
// A root pass whose row this store wrote (WithKnownPasses) skips the read:
// the same checks run on the row as written, and its write alone is sent,
// conditioned as always on the row being unchanged, so one round trip. If
// the row changed (another replica consumed the pass, or the mission
// moved), the write applies to nothing and the consumption reads and
// writes as above.
//
// The write cannot join the read in one statement: the history entry's
// hash covers the mission's version, sequence number and previous hash,
// canonical JSON that only Go writes (missionlog.Seal), and the mission's
// state rules live in Go (authority.EffectiveMissionState).
func (s *Store) ConsumePass(ctx context.Context, passHash, audience, authorizationID string, now time.Time) (*authority.Consumption, error) {
	if authorizationID == "" {
		return nil, errors.New("authoritypg: ConsumePass: empty authorization id")
	}
	known := s.knownWrite(passHash, audience, authorizationID, now)
	return s.consumePass(ctx, passHash, audience, authorizationID, now, nil, known)
}

// consumePass is ConsumePass whose first attempt starts from the read
// pre, when not nil, instead of reading the row itself, and is preceded,
// when known is not nil, by known's write alone.
func (s *Store) consumePass(ctx context.Context, passHash, audience, authorizationID string, now time.Time,
	pre *passRead, known *consumeWrite,
) (*authority.Consumption, error) {
	if known != nil {
		var n int
		if err := s.pool.QueryRow(ctx, consumeSQL[0], known.args...).Scan(&n); err != nil {
			return nil, consumeFailure(err)
		}
		if n == 1 {
			return &known.c, nil
		}
		// The row changed since this store wrote it: read it.
	}
	for range consumeAttempts {
		c, err := s.consume(ctx, passHash, audience, authorizationID, now, pre)
		pre = nil // a retry reads again
		switch {
		case errors.Is(err, errChanged):
			continue
		case err == nil:
			return c, nil
		}
		return nil, consumeFailure(err)
	}
	return nil, fmt.Errorf("authoritypg: ConsumePass: %w", errChanged)
}

// consumeFailure is the error ConsumePass answers for err.
func consumeFailure(err error) error {
	switch {
	case isUniqueViolation(err):
		return authority.ErrConflict
	case isStoreError(err):
		return err
	}
	return fmt.Errorf("authoritypg: ConsumePass: %w", err)
}

// knownWrite takes the row this store wrote for passHash, if it knows it,
// and returns the write that consumes it, or nil when there is no such row
// or the row does not show a consumable root pass (the consumption then
// reads the row and decides on what it finds: no error is answered from a
// remembered row).
func (s *Store) knownWrite(passHash, audience, authorizationID string, now time.Time) *consumeWrite {
	r := s.known.take(passHash, now)
	switch {
	case r == nil || r.PassHash != passHash || !knowable(r) || r.Service != audience:
		return nil
	case !now.Before(r.Decision.PassExpiresAt):
		return nil
	case authority.EffectiveMissionState(r, nil, now) != pass.MissionActive:
		return nil
	}
	w, err := newConsumeWrite(r, nil, passHash, audience, authorizationID, now)
	if err != nil {
		return nil
	}
	return w
}

// errChanged: the row or an ancestor changed between the read and the
// conditional write.
var errChanged = errors.New("the mission kept changing under the consumption")

// passRead is the outcome of a read of passRowSQL.
type passRead struct {
	r   *authority.Request
	err error
}

// consume is one attempt of ConsumePass, from the read pre when it is not
// nil. A root pass's row is read alone; a sub-agent's ancestors take a
// second read, made only once the row is known to be worth consuming, so
// refusals cost one round trip.
func (s *Store) consume(ctx context.Context, passHash, audience, authorizationID string, now time.Time, pre *passRead) (*authority.Consumption, error) {
	var r *authority.Request
	var err error
	if pre != nil {
		r, err = pre.r, pre.err
	} else {
		r, err = scanRequest(s.pool.QueryRow(ctx, passRowSQL, passHash))
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, authority.ErrNotFound
	case err != nil:
		return nil, err
	case r.Status != pass.StatusApproved || r.Decision == nil:
		return nil, authority.ErrNotFound
	case r.Service != audience:
		return nil, authority.ErrWrongAudience
	case !r.ConsumedAt.IsZero() && r.AuthorizationID != authorizationID:
		return nil, authority.ErrConsumed
	case r.ConsumedAt.IsZero() && !now.Before(r.Decision.PassExpiresAt):
		return nil, authority.ErrExpired
	}
	ancestors, complete, err := s.ancestors(ctx, r.ParentMissionID)
	switch {
	case err != nil:
		return nil, err
	case !r.ConsumedAt.IsZero(): // a retry whose answer was lost
		a, err := scanAuthorization(s.pool.QueryRow(ctx, `SELECT `+authorizationColumns+`
			FROM agentpass_authority_authorizations WHERE id = $1`, authorizationID))
		if err != nil {
			return nil, err
		}
		return &authority.Consumption{Authorization: a, Mission: r, Ancestors: ancestors}, nil
	case !complete: // an ancestor is gone: it ended
		return nil, authority.ErrNotFound
	case authority.EffectiveMissionState(r, ancestors, now) != pass.MissionActive:
		return nil, authority.ErrNotFound
	}
	w, err := newConsumeWrite(r, ancestors, passHash, audience, authorizationID, now)
	if err != nil {
		return nil, err
	}
	var n int
	if err := s.pool.QueryRow(ctx, consumeSQL[len(ancestors)], w.args...).Scan(&n); err != nil {
		return nil, err
	}
	if n != 1 {
		return nil, errChanged
	}
	return &w.c, nil
}

// consumeWrite is a consumption decided on a row: the arguments of its
// conditional write (consumeSQL) and its answer once the write applies.
type consumeWrite struct {
	args []any
	c    authority.Consumption
}

// newConsumeWrite seals the "redeemed" history record on r, which it
// updates to consumed, and builds the authorization and the write's
// arguments, conditioned on r and its ancestors being as they are now.
func newConsumeWrite(r *authority.Request, ancestors []*authority.Request, passHash, audience, authorizationID string, now time.Time) (*consumeWrite, error) {
	version, count := r.Version, r.HistoryCount
	r.ConsumedAt, r.AuthorizationID = now, authorizationID
	rec, err := r.Record(pass.HistoryEntry{Type: "redeemed", By: "service:" + audience,
		Details: map[string]any{"authorization_id": authorizationID}}, now)
	if err != nil {
		return nil, err
	}
	a := r.Authorize(authorizationID, now)
	// Room for a claim's parameters too (claimConsumeSQL).
	args := make([]any, 0, consumeParams+max(3*len(ancestors), claimParams))
	args = append(args,
		a.ID, a.MissionID, string(a.State), a.Service, string(a.Type), a.User, a.AgentID,
		a.HarnessID, jsonArg(a.Cnf), string(a.Tier), a.TaskID, a.TaskDescription, a.TaskAttested, a.DestinationURL,
		scopeArg(a.GrantedScope), scopeArg(a.Scope), ts(a.CreatedAt), ts(a.ExpiresAt),
		string(a.Approval.Status), a.Approval.DecidedBy, ts(a.Approval.DecidedAt), a.Approval.Reason, scopeArg(a.Approval.Scope),
		ts(a.Approval.PassExpiresAt), ts(a.Approval.AuthorizationExpiresAt),
		ts(a.UpdatedAt), a.StateBy, a.StateReason, ts(a.ClosedAt), a.HardenedBinding, a.ExpiresAt,
		passHash, version, count, ts(r.ConsumedAt), r.HistoryHead, r.HistoryCount, endsAt(r),
		rec.Seq, rec.Body, rec.Hash)
	for i := len(ancestors) - 1; i >= 0; i-- { // root first
		p := ancestors[i]
		args = append(args, p.MissionID, p.Version, p.HistoryCount)
	}
	return &consumeWrite{args: args, c: authority.Consumption{Authorization: a, Mission: r, Ancestors: ancestors}}, nil
}

// consumeParams is the number of parameters of consumeSQL[0]; each
// ancestor adds three.
const consumeParams = 41

// consumeSQL[n] writes a consumption decided on a read of the row and its
// n ancestors, if nothing changed since: $1-$31 are the authorization's
// columns, $32-$38 the pass hash, the version and history count read, the
// consumption, the new history head and count, and the row's end; $39-$41
// the history record; then each ancestor's id, version and history count
// as read, root first. Every write to a mission adds a history record, so
// an unchanged history count is an unchanged row. It answers the number of
// rows consumed, 0 or 1.
//
// There is one statement per depth, not one taking arrays: every estimate
// in it is then the same whatever the parameters (a VALUES list of n rows,
// equality lookups on unique keys), so the server's plan cache keeps its
// generic plan after the first executions instead of planning each
// execution anew (an array's unnest is estimated at 100 rows in a generic
// plan, which then lost to every custom plan; planning cost more than
// executing).
//
// The history record's order key (log_xid) is computed here as the insert
// trigger of migration 008 would, which then skips its call: the previous
// record was committed before the read this write depends on, so it is in
// this statement's snapshot. The row's end only ever grows here
// (GREATEST): the end stored at approval already covers the consumption
// (see endsAt), so the column keeps its value and the update can be a
// heap-only one that touches none of the table's indexes.
var consumeSQL = func() (out [maxDepth + 1]string) {
	for n := range out {
		out[n] = consumeStatement(n, "")
	}
	return out
}()

// consumeStatement is consumeSQL[n] and, with claim (the body of a
// common table expression whose parameters follow the write's), the
// same write made only if claim has a row; the statement then answers
// whether claim had one and the rows consumed.
func consumeStatement(n int, claim string) string {
	var anc, check strings.Builder
	if claim != "" {
		anc.WriteString("claim AS (" + claim + "\n\t), ")
	}
	if n > 0 {
		// Root first, as TransitionMission locks; each lock is an
		// equality lookup on the primary key behind LIMIT 1, so its
		// plan is an index scan whatever the table's statistics.
		anc.WriteString(`ancestors AS (
		SELECT r.id FROM (VALUES `)
		for i := range n {
			p := consumeParams + 3*i
			if i > 0 {
				anc.WriteString(", ")
			}
			fmt.Fprintf(&anc, "($%d::text, $%d::bigint, $%d::bigint)", p+1, p+2, p+3)
		}
		anc.WriteString(`) a(id, version, history_count)
		CROSS JOIN LATERAL (
			SELECT id FROM agentpass_authority_requests
			WHERE id = a.id AND version = a.version AND history_count = a.history_count
			LIMIT 1 FOR SHARE) r
	), `)
		fmt.Fprintf(&check, "\n\t\t\tAND (SELECT count(*) FROM ancestors) = %d", n)
	}
	answer := `SELECT count(*) FROM consumed`
	if claim != "" {
		check.WriteString("\n\t\t\tAND EXISTS (SELECT 1 FROM claim)")
		answer = `SELECT (SELECT count(*) FROM claim), (SELECT count(*) FROM consumed)`
	}
	return `
	WITH ` + anc.String() + `consumed AS (
		UPDATE agentpass_authority_requests
		SET consumed_at = $35, authorization_id = $1, history_head = $36, history_count = $37,
			ends_at = GREATEST(ends_at, $38)
		WHERE id = $2 AND pass_hash = $32 AND consumed_at IS NULL AND version = $33 AND history_count = $34` + check.String() + `
		RETURNING id
	), authz AS (
		INSERT INTO agentpass_authority_authorizations (` + authorizationColumns + `, ends_at)
		SELECT $1, id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
			$19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31
		FROM consumed
	), history AS (
		INSERT INTO agentpass_authority_mission_history (mission_id, seq, body, hash, log_xid)
		SELECT id, $39::bigint, $40, $41, GREATEST(pg_current_xact_id(), COALESCE((
			SELECT log_xid FROM agentpass_authority_mission_history
			WHERE mission_id = consumed.id AND seq = $39::bigint - 1), '0'::xid8))
		FROM consumed
	)
	` + answer
}

// passRowSQL reads the request holding the pass $1: one lookup on the
// unique pass_hash index.
const passRowSQL = `SELECT ` + requestColumns + ` FROM agentpass_authority_requests WHERE pass_hash = $1`

// ancestors reads, in one statement, the mission parentID and its
// ancestors, parent first, up to the depth ConsumePass checks; complete is
// false when one is missing (pruned after it ended). A root pass (parentID
// empty) needs no read.
func (s *Store) ancestors(ctx context.Context, parentID string) (ancestors []*authority.Request, complete bool, err error) {
	if parentID == "" {
		return nil, true, nil
	}
	rows, err := s.pool.Query(ctx, ancestorsSQL, parentID)
	if err != nil {
		return nil, false, err
	}
	ancestors, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*authority.Request, error) { return scanRequest(row) })
	if err != nil || len(ancestors) == 0 {
		return nil, false, err
	}
	top := ancestors[len(ancestors)-1]
	return ancestors, top.ParentMissionID == "" || len(ancestors) >= maxDepth, nil
}

// ancestorsSQL reads the mission $1 and its ancestors, parent first, up to
// maxDepth of them (a constant, not a parameter, so that no estimate
// depends on a parameter and the cached generic plan is kept, as for
// consumeSQL). Every step is an equality lookup on the primary key behind
// LIMIT 1, so the planner cannot turn it into a join: its plan is an index
// scan whatever the table's statistics. A join against the table here was
// planned as a sequential scan while the table was new, and that generic
// plan stayed cached as the table grew (TestConsumePlans).
const ancestorsSQL = `
	WITH RECURSIVE chain AS (
		SELECT ` + requestColumns + `, 1 AS depth FROM agentpass_authority_requests WHERE id = $1
		UNION ALL
		SELECT p.*, c.depth + 1 FROM chain c CROSS JOIN LATERAL (
			SELECT ` + requestColumns + ` FROM agentpass_authority_requests WHERE id = c.parent_mission_id LIMIT 1) p
		WHERE c.parent_mission_id <> '' AND c.depth < ` + maxDepthSQL + `
	)
	SELECT ` + requestColumns + ` FROM chain ORDER BY depth`

// maxDepth is how many ancestors ConsumePass checks.
const (
	maxDepth    = 32
	maxDepthSQL = "32"
)

type passState struct {
	found, approved, consumed bool
	service, authorizationID  string
}

// passState reads what decides a refused consumption or rotation.
func (s *Store) passState(ctx context.Context, where string, arg string) (passState, error) {
	var st passState
	err := s.pool.QueryRow(ctx, `
		SELECT status = 'approved' AND decision_status IS NOT NULL, consumed_at IS NOT NULL, service,
			coalesce(authorization_id, '')
		FROM agentpass_authority_requests WHERE `+where, arg).Scan(&st.approved, &st.consumed, &st.service, &st.authorizationID)
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

// Prune deletes records that can no longer change and ended more than the
// retention (WithRetention) before now: at most limit requests and at most
// limit authorizations per call (zero means 1,000), so a
// janitor's work per tick is bounded. It reports how many rows it deleted.
func (s *Store) Prune(ctx context.Context, now time.Time, limit int) (int64, error) {
	if limit <= 0 {
		limit = defaultPruneLimit
	}
	keep := s.keep.Fill(s.retention)
	// "= ANY (ARRAY (subquery))" makes the planner fetch the batch by
	// the ends_at index and delete it by primary key: the work is bounded
	// by limit, however large the backlog. (A row that ended cannot
	// change any more, so it needs no re-check.) A request's mission
	// history goes with it in the same transaction, never before it: the
	// history has no foreign key, whose check cost every consumption
	// more than a sixth of its write (migration 010). The history is
	// deleted by a second statement, whose snapshot sees every record
	// committed before the requests were deleted: a transition (a lazy
	// expiry) that held a due row while the first statement waited for
	// it commits its record after that statement's snapshot was taken,
	// and one delete in the same statement would leave the record
	// behind.
	const decided = `COALESCE(decision_status = 'approved' OR decided_at > created_at, false)`
	var total int64
	del := func(table, where string, keep time.Duration, n int64) (int64, error) {
		if keep >= authority.Forever || n <= 0 {
			return 0, nil
		}
		deleteSQL := `DELETE FROM ` + table + ` WHERE id = ANY (ARRAY (
			SELECT id FROM ` + table + ` WHERE ends_at < $1 AND ` + where + ` ORDER BY ends_at LIMIT $2))
			RETURNING id`
		var deleted int64
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, deleteSQL, now.Add(-keep), n)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil || len(ids) == 0 || table != "agentpass_authority_requests" {
				deleted = int64(len(ids))
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM agentpass_authority_mission_history WHERE mission_id = ANY ($1)`, ids); err != nil {
				return err
			}
			deleted = int64(len(ids))
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("authoritypg: Prune: %w", err)
		}
		total += deleted
		return deleted, nil
	}
	// Requests of both kinds share one batch; authorizations have theirs.
	n, err := del("agentpass_authority_requests", "NOT "+decided, keep.Undecided, int64(limit))
	if err != nil {
		return total, err
	}
	if _, err := del("agentpass_authority_requests", decided, keep.Decided, int64(limit)-n); err != nil {
		return total, err
	}
	if _, err := del("agentpass_authority_authorizations", "true", keep.Authorizations, int64(limit)); err != nil {
		return total, err
	}
	// SETs nobody polled or pushed within a day.
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM agentpass_authority_events WHERE seq = ANY (ARRAY (
			SELECT seq FROM agentpass_authority_events WHERE created_at < $1 AND owner = '' ORDER BY seq LIMIT $2))`,
		now.Add(-authority.OutboxRetention), limit)
	if err != nil {
		return total, fmt.Errorf("authoritypg: Prune: %w", err)
	}
	return total + tag.RowsAffected(), nil
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
		maxDepth, maxChildren                     int
		plan                                      pgtype.Text
		requested                                 []string
		splan, scopeBasis, disclosure             string
	)
	var (
		state, endedBy, endedCause, endedReason string
		activated, endedAt                      pgtype.Timestamptz
		scope                                   []string
	)
	err := row.Scan(&r.MissionID, &status, &created, &expires, &typ, &r.Service, &r.User, &r.HarnessID, &cnf,
		&r.AgentID, &tier, &r.AttestationIssuer, &r.TaskID, &r.TaskDescription, &r.TaskAttested, &r.DestinationURL,
		&avail, &proposed, &r.ProposedBy, &r.ParentMissionID,
		&decStatus, &decidedBy, &decidedAt, &decReason, &decScope, &passExp,
		&authzExp, &passHash, &consumed, &authzID,
		&r.IDHash, &state, &r.Version, &activated, &scope, &endedAt, &endedBy, &endedCause, &endedReason,
		&r.HistoryHead, &r.HistoryCount, &r.HardenedBinding, &maxDepth, &maxChildren, &plan,
		&requested, &splan, &scopeBasis, &disclosure)
	if err != nil {
		return nil, err
	}
	if err := scanStagePlan(plan, &r); err != nil {
		return nil, err
	}
	r.RequestedScope = scopeOf(requested)
	if err := readScopePlan(splan, &r); err != nil {
		return nil, err
	}
	r.State, r.ActivatedAt, r.Scope = pass.MissionState(state), tm(activated), scopeOf(scope)
	if endedAt.Valid {
		r.Ended = &pass.MissionEnd{At: tm(endedAt), By: endedBy, Cause: endedCause, Reason: endedReason}
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
			MaxDepth: maxDepth, MaxChildren: maxChildren, ScopeDecision: scopeBasis, DisclosureSHA256: disclosure,
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
	err := row.Scan(&a.ID, &a.MissionID, &state, &a.Service, &typ, &a.User, &a.AgentID,
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
	for _, e := range []error{authority.ErrNotFound, authority.ErrConflict, authority.ErrNotPending, authority.ErrExpired, authority.ErrTerminal,
		authority.ErrConsumed, authority.ErrWrongAudience, authority.ErrState, authority.ErrScopeWiden, authority.ErrTooManyChildren} {
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
