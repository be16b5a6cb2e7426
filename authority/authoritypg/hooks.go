package authoritypg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpass-go/agentpass/authority"
)

var _ authority.LogStore = (*Store)(nil)

// maxHookConsumers bounds the consumer rows ClaimConsumer creates.
const maxHookConsumers = 1000

// ReadLog implements authority.LogStore. Positions are "xid/id" of the
// last row read.
func (s *Store) ReadLog(ctx context.Context, after string, limit int) ([]authority.LogRecord, error) {
	xid, id := "0", int64(0)
	if after != "" {
		x, i, ok := strings.Cut(after, "/")
		n, err := strconv.ParseInt(i, 10, 64)
		if _, xerr := strconv.ParseUint(x, 10, 64); !ok || err != nil || xerr != nil {
			return nil, fmt.Errorf("authoritypg: ReadLog: bad position")
		}
		xid, id = x, n
	}
	limit = authority.ListOptions{Limit: limit}.EffectiveLimit()
	rows, err := s.pool.Query(ctx, `
		SELECT log_xid::text, log_id, mission_id, seq, body, hash FROM agentpass_authority_mission_history
		WHERE (log_xid, log_id) > ($1::text::xid8, $2) AND log_xid < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY log_xid, log_id LIMIT $3`, xid, id, limit)
	if err != nil {
		return nil, fmt.Errorf("authoritypg: ReadLog: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (authority.LogRecord, error) {
		var r authority.LogRecord
		var x string
		var n int64
		err := row.Scan(&x, &n, &r.MissionID, &r.Seq, &r.Body, &r.Hash)
		r.Position = x + "/" + strconv.FormatInt(n, 10)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("authoritypg: ReadLog: %w", err)
	}
	return out, nil
}

// ClaimConsumer implements authority.LogStore: one conditional UPDATE,
// under the row's lock, so two replicas never both hold a consumer.
func (s *Store) ClaimConsumer(ctx context.Context, name, owner string, now, leaseUntil time.Time) (string, bool, error) {
	if name == "" || owner == "" {
		return "", false, fmt.Errorf("authoritypg: ClaimConsumer: empty name or owner")
	}
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO agentpass_authority_hook_consumers (name)
		SELECT $1 WHERE (SELECT count(*) FROM agentpass_authority_hook_consumers) < $2
		ON CONFLICT (name) DO NOTHING`, name, maxHookConsumers); err != nil {
		return "", false, fmt.Errorf("authoritypg: ClaimConsumer: %w", err)
	}
	var pos string
	err := s.pool.QueryRow(ctx, `
		UPDATE agentpass_authority_hook_consumers SET owner = $2, lease_until = $4
		WHERE name = $1 AND (owner = '' OR owner = $2 OR lease_until <= $3)
		RETURNING position`, name, owner, now, leaseUntil).Scan(&pos)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM agentpass_authority_hook_consumers WHERE name = $1)`, name).Scan(&exists); err != nil {
			return "", false, fmt.Errorf("authoritypg: ClaimConsumer: %w", err)
		}
		if !exists {
			return "", false, authority.ErrStoreFull
		}
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("authoritypg: ClaimConsumer: %w", err)
	}
	return pos, true, nil
}

// SaveConsumer implements authority.LogStore.
func (s *Store) SaveConsumer(ctx context.Context, name, owner, position string, leaseUntil time.Time) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE agentpass_authority_hook_consumers SET position = $3, lease_until = $4
		WHERE name = $1 AND owner = $2`, name, owner, position, leaseUntil)
	if err != nil {
		return fmt.Errorf("authoritypg: SaveConsumer: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return authority.ErrState
	}
	return nil
}
