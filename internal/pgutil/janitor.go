package pgutil

import (
	"context"
	"log/slog"
	"time"
)

// DefaultJanitorInterval is the interval RunJanitor uses when given zero.
const DefaultJanitorInterval = time.Minute

// JanitorBatch is the most rows one prune call deletes from each table:
// small enough that each DELETE holds its locks only briefly, and the unit
// by which RunJanitor tells whether a backlog remains.
const JanitorBatch = 1000

// RunJanitor prunes at once and then every interval (zero means
// DefaultJanitorInterval) until ctx is done, and returns ctx's error.
//
// Each tick calls prune(ctx, JanitorBatch) again and again until a call
// deletes fewer than JanitorBatch rows (the backlog is gone), ctx is done,
// or the tick has run for interval. The work per tick is so bounded by
// time rather than by a row count, and the janitor keeps up with as many
// expiring rows a second as the database can delete: a janitor deleting
// one batch per tick falls behind for good as soon as more rows than a
// batch expire per interval. A tick that runs out of time is logged at
// warning level, and the next tick starts at once; every other tick ends
// with a debug record of the rows it deleted.
//
// prune must delete at most limit rows per table and report how many rows
// it deleted. A failing prune (the database restarting, say) is logged at
// warning level and retried at the next tick; logger nil discards. The
// janitor never calls prune twice at once.
func RunJanitor(ctx context.Context, interval time.Duration, logger *slog.Logger, component string, prune func(ctx context.Context, limit int) (int64, error)) error {
	if interval <= 0 {
		interval = DefaultJanitorInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, done, err := sweep(ctx, interval, prune)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.LogAttrs(ctx, slog.LevelWarn, "pgutil: prune failed", slog.String("component", component),
				slog.Int64("rows", n), slog.String("error", err.Error()))
		case !done && ctx.Err() == nil:
			logger.LogAttrs(ctx, slog.LevelWarn, "pgutil: prune did not catch up within the interval",
				slog.String("component", component), slog.Int64("rows", n))
		default: // at debug level every tick, so an operator can see the janitor run
			logger.LogAttrs(ctx, slog.LevelDebug, "pgutil: pruned", slog.String("component", component), slog.Int64("rows", n))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// sweep is one tick of RunJanitor: batches until one comes back short
// (done), ctx ends, or budget has passed. It returns the rows deleted.
func sweep(ctx context.Context, budget time.Duration, prune func(context.Context, int) (int64, error)) (total int64, done bool, err error) {
	start := time.Now()
	for {
		n, err := prune(ctx, JanitorBatch)
		total += n
		if err != nil {
			return total, false, err
		}
		if n < JanitorBatch {
			return total, true, nil
		}
		if ctx.Err() != nil || time.Since(start) >= budget {
			return total, false, nil
		}
	}
}
