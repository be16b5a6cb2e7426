package dpop

import (
	"errors"
	"fmt"
	"time"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

// claims is the union of every claim this package reads (one struct for
// every kind makes kind-confusion checks a matter of presence).
type claims = jwtcheck.Claims

// cnfClaim is the confirmation claim.
type cnfClaim = jwtcheck.Cnf

// checkErr turns a failure of the shared pipeline into this package's
// error of the given kind; a replay cache failure passes through wrapped,
// matching no kind.
func checkErr(kind error, err error) error {
	var e *jwtcheck.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("dpop: %w", err)
	}
	if errors.Is(e.Err, jwtcheck.ErrReplay) {
		return wrapErr(kind, e.Reason, ErrReplay)
	}
	return &Error{Kind: kind, Reason: e.Reason, Err: e.Err}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func nowOr(f func() time.Time) func() time.Time {
	if f == nil {
		return time.Now
	}
	return f
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
