package harness

import (
	"context"
	"time"
)

// ForgetUse marks g unused again, so that a test can present the same pass
// twice and see the Service refuse the replay; the Client itself never does.
func ForgetUse(g *Grant) { g.used.Store(false) }

// SetSleep replaces how c waits between polls and before retries, so an
// end-to-end test can advance a fake clock instead of sleeping.
func SetSleep(c *Client, sleep func(ctx context.Context, d time.Duration) error) { c.sleep = sleep }

// PendingCompletions returns how many mission completions wait for Run.
func PendingCompletions(c *Client) int { return c.pendingCompletions() }
