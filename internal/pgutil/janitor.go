package pgutil

import (
	"context"
	"log/slog"
	"time"
)

// DefaultJanitorInterval is the interval RunJanitor uses when given zero.
const DefaultJanitorInterval = time.Minute

// RunJanitor calls prune at once and then every interval (zero means
// DefaultJanitorInterval) until ctx is done, and returns ctx's error. A
// failing prune (the database restarting, say) is logged at warning level
// and retried at the next tick; logger nil discards. Each call of prune is
// expected to do bounded work; the janitor never calls it twice at once.
func RunJanitor(ctx context.Context, interval time.Duration, logger *slog.Logger, component string, prune func(context.Context) (int64, error)) error {
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
		n, err := prune(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.LogAttrs(ctx, slog.LevelWarn, "pgutil: prune failed", slog.String("component", component), slog.String("error", err.Error()))
		case n > 0:
			logger.LogAttrs(ctx, slog.LevelDebug, "pgutil: pruned", slog.String("component", component), slog.Int64("rows", n))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
