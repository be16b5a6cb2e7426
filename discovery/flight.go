package discovery

import (
	"context"
	"time"
)

// flight runs fn once for all concurrent callers with the same key. fn gets a
// context detached from any one caller's cancellation (it keeps the first
// caller's values) and bounded by timeout, so a caller that gives up does not
// fail the others; each caller still returns as soon as its own ctx is done.
// A panic in fn is not recovered.
func (c *Client) flight(ctx context.Context, key string, timeout time.Duration, fn func(context.Context) (any, error)) (any, error) {
	ch := c.group.DoChan(key, func() (any, error) {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		return fn(wctx)
	})
	if c.joined != nil {
		c.joined(key) // registered with the flight: tests count waiters
	}
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
