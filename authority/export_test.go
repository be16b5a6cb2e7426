package authority

import (
	"context"
	"time"
)

// DeliverDue runs one delivery round of the transmitter, so tests drive
// retries with their clock instead of sleeping.
func (a *Authority) DeliverDue(ctx context.Context) (time.Time, error) { return a.deliverDue(ctx) }

// FixJitter makes the transmitter's backoff jitter the factor f.
func (a *Authority) FixJitter(f float64) { a.tx.jitter = func() float64 { return f } }
