package authority

import (
	"math"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// Forever, as a Retention, keeps records until they are deleted by other
// means.
const Forever time.Duration = math.MaxInt64

// Retention says how long a store keeps records that can no longer
// change, per kind, counted from when they stopped changing
// (Request.EndsAt; an authorization's closing or expiry). A zero field
// takes the store's default (one hour). A mission's history is kept and
// pruned with its request, never apart from it, so a kept mission's
// history always verifies.
type Retention struct {
	// Undecided is for requests nobody decided: they expired pending, or
	// were refused automatically when they were made. Forever is not
	// honoured here (the default applies): anyone can create such
	// requests, and a flood of them must not fill a store for good.
	Undecided time.Duration
	// Decided is for requests a person or a policy decided after they
	// were made (after their creation instant), and every approved one,
	// with their missions and histories.
	Decided time.Duration
	// Authorizations is for closed or expired authorizations.
	Authorizations time.Duration
}

// Fill returns k with zero fields set to def, and an Undecided of
// Forever replaced by def. Store implementations use it.
func (k Retention) Fill(def time.Duration) Retention {
	if k.Undecided <= 0 || k.Undecided >= Forever {
		k.Undecided = def
	}
	if k.Decided <= 0 {
		k.Decided = def
	}
	if k.Authorizations <= 0 {
		k.Authorizations = def
	}
	return k
}

// forRequest returns the retention of r's kind: Decided when r was
// approved or decided after it was made, Undecided otherwise (authoritypg
// has the same rule in SQL).
func (k Retention) forRequest(r *Request) time.Duration {
	if d := r.Decision; d != nil && (d.Status == pass.StatusApproved || d.DecidedAt.After(r.CreatedAt)) {
		return k.Decided
	}
	return k.Undecided
}

// expired reports whether a record that stopped changing at end and is
// kept for d may be dropped at now.
func expired(end time.Time, d time.Duration, now time.Time) bool {
	return d < Forever && end.Before(now.Add(-d))
}

// WithRetentionPolicy sets the retention per kind of record (see
// Retention); it overrides WithRetention for the fields it sets. With
// Decided or Authorizations set to Forever the store fills up at its
// limit (WithLimit) and then refuses new requests with ErrStoreFull: keep
// records forever in a database (authoritypg), not in memory.
func WithRetentionPolicy(k Retention) MemoryOption {
	return func(m *MemoryStore) { m.keep = k }
}
