package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/agentpass-go/agentpass/internal/missionlog"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
)

// LogStore is the part of a Store that feeds hooks: the histories of all
// missions in one commit order, and leased positions of named consumers,
// so that replicas sharing the store deliver each entry once between
// them. MemoryStore and authoritypg implement it.
type LogStore interface {
	// ReadLog returns up to limit history records after the position
	// after ("" for the beginning), in commit order, which within one
	// mission is seq order. A record is returned only once no record
	// before it in that order can still commit, so a reader that moves
	// past it never misses one. (On PostgreSQL a transaction left open
	// on the server so delays every hook until it ends; nothing is lost.)
	ReadLog(ctx context.Context, after string, limit int) ([]LogRecord, error)

	// ClaimConsumer leases the consumer name to owner until leaseUntil
	// when nobody holds it at now or owner already does, and returns its
	// saved position ("" at first). ok is false while another owner's
	// lease runs.
	ClaimConsumer(ctx context.Context, name, owner string, now, leaseUntil time.Time) (position string, ok bool, err error)

	// SaveConsumer saves the position of name and sets owner's lease to
	// leaseUntil (a past time releases it). ErrState when another owner
	// has claimed it meanwhile.
	SaveConsumer(ctx context.Context, name, owner, position string, leaseUntil time.Time) error
}

// LogRecord is one history record in a LogStore's commit order.
type LogRecord struct {
	MissionID string
	HistoryRecord
	// Position is the opaque position just after this record.
	Position string
}

// HookEvent is one lifecycle event: one entry of a mission's history.
type HookEvent struct {
	MissionID string
	// Entry is the history entry. Its Type is the event: requested,
	// proposed, approved, denied, canceled, redeemed (the pass was
	// consumed), suspended, resumed, scope_narrowed, revoked, expired,
	// completed, the stage entries, and the observations Services report.
	// A delegated mission's "requested" entry names its parent in
	// Details["parent"].
	Entry pass.HistoryEntry
	// Request is the mission's request as stored when the event is
	// delivered (it may have moved on since the entry); nil once pruned.
	Request *Request
}

// Hooks configures Authority.RunHooks.
type Hooks struct {
	// Name identifies the consumer: its position is saved in the store
	// under it, and replicas running RunHooks with the same name deliver
	// each event once between them. If empty, "hooks".
	Name string
	// Handle is called for each event, one at a time, in commit order (so
	// in order per mission). An error retries the same event, with a
	// backoff up to 30 seconds; return nil to skip an event. Delivery is
	// at least once: after a crash or a lost lease the last event may
	// come again. Handle must return within the lease (30 seconds).
	// Required.
	Handle func(ctx context.Context, e HookEvent) error
	// Queue bounds the events read ahead of Handle. If zero, 256. When it
	// is full, reading pauses (nothing is dropped: the events stay in the
	// store), and the pause is logged and counted (HookOverflows).
	Queue int
	// Poll is how often the store is read for events when nothing wakes
	// the reader, and how often a replica that does not hold the lease
	// tries to take it. If zero, one second.
	Poll time.Duration
}

const (
	hookLease      = 30 * time.Second
	hookMaxBackoff = 30 * time.Second
	hookPage       = 100
	maxHookQueue   = 10_000
)

// hookState is the Authority's side of RunHooks.
type hookState struct {
	overflows atomic.Int64
	// firstRetry is the first backoff of a failed Handle.
	firstRetry time.Duration
}

// logWaiter is implemented by stores that can wake a reader when a
// history record is appended (MemoryStore); others are polled.
type logWaiter interface {
	logChanged() <-chan struct{}
}

// HookOverflows returns how many times the hook queue was full and
// reading paused since the Authority started.
func (a *Authority) HookOverflows() int64 { return a.hooks.overflows.Load() }

// logStore returns the configured store's LogStore, or nil.
func (a *Authority) logStore() LogStore {
	s := a.store
	if e, ok := s.(eventStore); ok {
		s = e.Store
	}
	ls, _ := s.(LogStore)
	return ls
}

// RunHooks delivers every lifecycle event of every mission to h.Handle
// until ctx is done, and returns ctx's error. Events come from the
// missions' hash-chained history, the one audit trail, so nothing is told
// that was not recorded. The request path never waits for a hook: events
// are read from the store after they are committed. Run it in one
// goroutine per replica: replicas sharing a store take turns holding the
// consumer's lease, and only the holder delivers. The library starts no
// goroutine of its own except the reader inside RunHooks.
//
// Config.OnPending stays what it was: a synchronous call inside the
// issuance request, before the Harness is answered. RunHooks sees the same
// request as its "requested" event, later and at least once, also from
// requests another replica took.
func (a *Authority) RunHooks(ctx context.Context, h Hooks) error {
	if err := a.ready(); err != nil {
		return err
	}
	if h.Handle == nil {
		return fmt.Errorf("%w: Hooks.Handle is required", ErrInvalidConfig)
	}
	if h.Name == "" {
		h.Name = "hooks"
	}
	if len(h.Name) > 200 {
		return fmt.Errorf("%w: Hooks.Name is longer than 200 bytes", ErrInvalidConfig)
	}
	switch {
	case h.Queue <= 0:
		h.Queue = 256
	case h.Queue > maxHookQueue:
		h.Queue = maxHookQueue
	}
	if h.Poll <= 0 {
		h.Poll = time.Second
	}
	ls := a.logStore()
	if ls == nil {
		return fmt.Errorf("%w: the Store keeps no log for hooks (it does not implement LogStore)", ErrInvalidConfig)
	}
	owner := secret.ID("hook_")
	for {
		now := a.now()
		var pos string
		var ok bool
		err := detached(ctx, func(ctx context.Context) (err error) {
			pos, ok, err = ls.ClaimConsumer(ctx, h.Name, owner, now, now.Add(hookLease))
			return err
		})
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass hooks: claim failed", slog.String("consumer", h.Name), slog.String("reason", err.Error()))
		case ok:
			err = a.deliverHooks(ctx, ls, h, owner, pos)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass hooks: delivery stopped", slog.String("consumer", h.Name), slog.String("reason", err.Error()))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(h.Poll):
		}
	}
}

// deliverHooks delivers from pos while owner holds the lease. It returns
// when ctx is done (releasing the lease) or the lease or the store fails.
func (a *Authority) deliverHooks(ctx context.Context, ls LogStore, h Hooks, owner, pos string) error {
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	q := make(chan LogRecord, h.Queue)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.readHooks(rctx, ls, h, pos, q)
	}()
	defer func() { stop(); <-done }()
	renew := time.NewTicker(hookLease / 3)
	defer renew.Stop()
	save := func(ctx context.Context, until time.Time) error {
		return detached(ctx, func(ctx context.Context) error { return ls.SaveConsumer(ctx, h.Name, owner, pos, until) })
	}
	defer func() {
		if ctx.Err() != nil {
			// Stopped: let another replica take over at once, whatever
			// step the cancellation interrupted.
			_ = save(ctx, a.now())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-renew.C:
			if err := save(ctx, a.now().Add(hookLease)); err != nil {
				return err
			}
		case rec := <-q:
			if err := a.deliverHook(ctx, h, rec, func() error { return save(ctx, a.now().Add(hookLease)) }); err != nil {
				return err
			}
			pos = rec.Position
			if err := save(ctx, a.now().Add(hookLease)); err != nil {
				return err
			}
		}
	}
}

// deliverHook calls h.Handle for rec until it succeeds, renewing the lease
// between attempts. A record that cannot be decoded is logged and skipped:
// it would never decode.
func (a *Authority) deliverHook(ctx context.Context, h Hooks, rec LogRecord, renew func() error) error {
	e, err := missionlog.Decode(rec.Body, rec.Hash)
	if err != nil {
		a.log.LogAttrs(ctx, slog.LevelError, "agentpass hooks: history record unreadable; skipped",
			slog.String("mission_id", rec.MissionID), slog.Int64("seq", rec.Seq), slog.String("reason", err.Error()))
		return nil
	}
	ev := HookEvent{MissionID: rec.MissionID, Entry: e}
	backoff := a.hooks.firstRetry
	if backoff <= 0 {
		backoff = 100 * time.Millisecond
	}
	for {
		err := a.lookupForHook(ctx, &ev)
		if err == nil {
			err = h.Handle(ctx, ev)
		}
		if err == nil {
			return nil
		}
		attrs := []slog.Attr{slog.String("consumer", h.Name), slog.String("event", e.Type), slog.Int64("seq", e.Seq), slog.String("reason", err.Error())}
		if ev.Request != nil {
			attrs = append(requestAttrs(ev.Request), attrs...)
		} else {
			attrs = append(attrs, slog.String("mission_id", rec.MissionID))
		}
		a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass hooks: handler failed; retrying", attrs...)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, hookMaxBackoff)
		if err := renew(); err != nil {
			return err
		}
	}
}

// lookupForHook fills ev.Request; a pruned mission leaves it nil.
func (a *Authority) lookupForHook(ctx context.Context, ev *HookEvent) error {
	if ev.Request != nil {
		return nil
	}
	r, err := a.store.Request(ctx, ev.MissionID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	ev.Request = r
	return err
}

// readHooks reads the log from pos into q until ctx is done. A full queue
// pauses it; the pause is logged and counted, and nothing is dropped.
func (a *Authority) readHooks(ctx context.Context, ls LogStore, h Hooks, pos string, q chan<- LogRecord) {
	w, _ := ls.(logWaiter)
	for {
		var wake <-chan struct{}
		if w != nil {
			wake = w.logChanged() // before reading, so no append is missed
		}
		limit := min(hookPage, h.Queue)
		recs, err := ls.ReadLog(ctx, pos, limit)
		if err != nil && ctx.Err() == nil {
			a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass hooks: reading the log failed", slog.String("consumer", h.Name), slog.String("reason", err.Error()))
		}
		for _, rec := range recs {
			select {
			case q <- rec:
			default:
				n := a.hooks.overflows.Add(1)
				a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass hooks: queue full; reading paused", slog.String("consumer", h.Name),
					slog.Int("queue", h.Queue), slog.Int64("overflows", n))
				select {
				case q <- rec:
				case <-ctx.Done():
					return
				}
			}
			pos = rec.Position
		}
		if err == nil && len(recs) == limit {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-time.After(h.Poll):
		}
	}
}

// detached runs a lease operation to its end even when ctx is cancelled
// meanwhile: a statement abandoned by its client may still commit after
// the release that follows it, and leave a lease held by nobody.
func detached(ctx context.Context, f func(context.Context) error) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return f(dctx)
}
