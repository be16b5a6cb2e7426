package authoritypg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// eventsChannel is the LISTEN/NOTIFY channel on which an enqueue wakes
// transmitters and long polls of every replica.
const eventsChannel = "agentpass_authority_events"

var _ authority.EventStore = (*Store)(nil)

// SetEventReceiver implements authority.EventStore.
func (s *Store) SetEventReceiver(ctx context.Context, service string, r *pass.ServiceEvents) error {
	var err error
	if r == nil {
		_, err = s.pool.Exec(ctx, `DELETE FROM agentpass_authority_event_receivers WHERE service = $1`, service)
	} else {
		accepted := append([]string{}, r.EventsAccepted...)
		_, err = s.pool.Exec(ctx, `
			INSERT INTO agentpass_authority_event_receivers (service, delivery_method, receiver, events_accepted)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (service) DO UPDATE SET delivery_method = $2, receiver = $3, events_accepted = $4`,
			service, r.DeliveryMethod, r.Receiver, accepted)
	}
	if err != nil {
		return fmt.Errorf("authoritypg: SetEventReceiver: %w", err)
	}
	return nil
}

// enqueueEvent asks c.Events for the SET of one changed mission whose
// authorization (after the change) is a, and stores it inside tx. The SET
// supersedes the unleased SETs of its subject that a newer one may
// replace: all of them when it is terminal, otherwise those that are not
// Keep (the receiver narrows to the newest and confirms a version gap by
// a check). At the per-Service bound a SET that is not Keep is refused and
// returned, rather than dropping another subject's SET, which nothing has
// superseded.
func enqueueEvent(ctx context.Context, tx pgx.Tx, c authority.MissionChange, root, r *authority.Request, prior *authority.Request, ancestors []*authority.Request, a *authority.Authorization) (refused *authority.OutboxEvent, err error) {
	if c.Events == nil || a == nil || r.Version == prior.Version {
		return nil, nil
	}
	var rcv pass.ServiceEvents
	err = tx.QueryRow(ctx, `SELECT delivery_method, receiver, events_accepted FROM agentpass_authority_event_receivers WHERE service = $1`,
		a.Service).Scan(&rcv.DeliveryMethod, &rcv.Receiver, &rcv.EventsAccepted)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var chain []*authority.Request
	for _, p := range ancestors {
		chain = append(chain, p.Clone())
	}
	ev, err := c.Events(authority.MissionEvent{Change: c, Root: root.Clone(), Mission: r.Clone(), Prior: prior.State, Authorization: a.Clone(), Receiver: rcv,
		Ancestors: chain})
	if err != nil || ev == nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM agentpass_authority_events WHERE subject = $1 AND owner = '' AND ($2 OR NOT keep)`,
		ev.Subject, ev.Terminal); err != nil {
		return nil, err
	}
	if !ev.Keep {
		// Counts up to the bound only, so a full outbox costs no more.
		var full bool
		if err := tx.QueryRow(ctx, `SELECT count(*) >= $2 FROM (
			SELECT 1 FROM agentpass_authority_events WHERE service = $1 LIMIT $2) b`,
			ev.Service, authority.MaxOutboxPerService).Scan(&full); err != nil {
			return nil, err
		}
		if full {
			return ev, nil
		}
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO agentpass_authority_events (jti, service, subject, push, receiver, terminal, keep, set_jwt, created_at, next_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		ev.JTI, ev.Service, ev.Subject, ev.Push, ev.Receiver, ev.Terminal, ev.Keep, ev.SET, ev.CreatedAt, ev.NextAt); err != nil {
		return nil, err
	}
	_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, eventsChannel)
	return nil, err
}

const eventColumns = `seq, jti, service, subject, push, receiver, terminal, keep, set_jwt, created_at, next_at, attempts`

func scanEvent(row pgx.CollectableRow) (*authority.OutboxEvent, error) {
	var e authority.OutboxEvent
	err := row.Scan(&e.Seq, &e.JTI, &e.Service, &e.Subject, &e.Push, &e.Receiver, &e.Terminal, &e.Keep, &e.SET, &e.CreatedAt, &e.NextAt, &e.Attempts)
	e.CreatedAt, e.NextAt = e.CreatedAt.UTC(), e.NextAt.UTC()
	return &e, err
}

// ClaimEvents implements authority.EventStore. Claims are serialised by a
// transaction-scoped advisory lock, so the count of leased SETs per
// Service is exact across replicas; a SET is eligible only while it is
// the oldest of its subject, so per-subject order holds whoever claims.
func (s *Store) ClaimEvents(ctx context.Context, owner string, now, leaseUntil time.Time, limit, perService int) ([]*authority.OutboxEvent, error) {
	var out []*authority.OutboxEvent
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = nil
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, eventsChannel); err != nil {
			return err
		}
		busy := map[string]int{}
		rows, err := tx.Query(ctx, `SELECT service, count(*) FROM agentpass_authority_events
			WHERE owner <> '' AND lease_until > $1 GROUP BY service`, now)
		if err != nil {
			return err
		}
		for rows.Next() {
			var svc string
			var n int
			if err := rows.Scan(&svc, &n); err != nil {
				rows.Close()
				return err
			}
			busy[svc] = n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+eventColumns+` FROM agentpass_authority_events o
			WHERE o.push AND o.next_at <= $1 AND (o.owner = '' OR o.lease_until <= $1)
			AND NOT EXISTS (SELECT 1 FROM agentpass_authority_events p WHERE p.subject = o.subject AND p.seq < o.seq)
			ORDER BY o.seq LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit*4)
		if err != nil {
			return err
		}
		cands, err := pgx.CollectRows(rows, scanEvent)
		if err != nil {
			return err
		}
		var seqs []int64
		for _, e := range cands {
			if len(out) >= limit || busy[e.Service] >= perService {
				continue
			}
			busy[e.Service]++
			seqs = append(seqs, e.Seq)
			out = append(out, e)
		}
		if len(seqs) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE agentpass_authority_events SET owner = $1, lease_until = $2 WHERE seq = ANY($3)`, owner, leaseUntil, seqs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("authoritypg: ClaimEvents: %w", err)
	}
	return out, nil
}

// FinishEvent implements authority.EventStore.
func (s *Store) FinishEvent(ctx context.Context, owner, jti string, next time.Time) error {
	var n int64
	if next.IsZero() {
		tag, err := s.pool.Exec(ctx, `DELETE FROM agentpass_authority_events WHERE jti = $1 AND owner = $2`, jti, owner)
		if err != nil {
			return fmt.Errorf("authoritypg: FinishEvent: %w", err)
		}
		n = tag.RowsAffected()
	} else {
		tag, err := s.pool.Exec(ctx, `UPDATE agentpass_authority_events
			SET owner = '', lease_until = NULL, next_at = $3, attempts = attempts + 1 WHERE jti = $1 AND owner = $2`, jti, owner, next)
		if err != nil {
			return fmt.Errorf("authoritypg: FinishEvent: %w", err)
		}
		n = tag.RowsAffected()
	}
	if n == 0 {
		return authority.ErrNotFound
	}
	return nil
}

// PollEvents implements authority.EventStore.
func (s *Store) PollEvents(ctx context.Context, service string, max int, now time.Time) ([]*authority.OutboxEvent, bool, error) {
	if _, err := s.pool.Exec(ctx, `DELETE FROM agentpass_authority_events WHERE service = $1 AND NOT push AND created_at < $2`,
		service, now.Add(-authority.OutboxRetention)); err != nil {
		return nil, false, fmt.Errorf("authoritypg: PollEvents: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM agentpass_authority_events
		WHERE service = $1 AND NOT push ORDER BY seq LIMIT $2`, service, max+1)
	if err != nil {
		return nil, false, fmt.Errorf("authoritypg: PollEvents: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, false, fmt.Errorf("authoritypg: PollEvents: %w", err)
	}
	if len(out) > max {
		return out[:max], true, nil
	}
	return out, false, nil
}

// AckEvents implements authority.EventStore.
func (s *Store) AckEvents(ctx context.Context, service string, jtis []string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM agentpass_authority_events WHERE service = $1 AND jti = ANY($2)`, service, jtis); err != nil {
		return fmt.Errorf("authoritypg: AckEvents: %w", err)
	}
	return nil
}

// WaitEvents implements authority.EventStore with LISTEN/NOTIFY on a
// pooled connection held while it waits: every replica's enqueue wakes it.
// The generation is the outbox sequence, which never goes back.
func (s *Store) WaitEvents(ctx context.Context, after int64) (int64, error) {
	gen := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) (int64, error) {
		var g int64
		err := q.QueryRow(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM agentpass_authority_events_seq_seq`).Scan(&g)
		return g, err
	}
	if g, err := gen(s.pool); err != nil || g > after {
		if err != nil {
			return after, fmt.Errorf("authoritypg: WaitEvents: %w", err)
		}
		return g, nil
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return after, fmt.Errorf("authoritypg: WaitEvents: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN `+eventsChannel); err != nil {
		return after, fmt.Errorf("authoritypg: WaitEvents: %w", err)
	}
	clean := false
	defer func() {
		if clean {
			_, _ = conn.Exec(context.WithoutCancel(ctx), `UNLISTEN `+eventsChannel)
		} else {
			// A wait interrupted mid-read leaves the connection unusable.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		g, err := gen(conn)
		if err != nil {
			return after, fmt.Errorf("authoritypg: WaitEvents: %w", err)
		}
		if g > after {
			clean = true
			return g, nil
		}
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return after, ctx.Err()
			}
			return after, fmt.Errorf("authoritypg: WaitEvents: %w", err)
		}
	}
}
