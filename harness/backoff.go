package harness

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// backoff is the state of the exponential backoff used between polls when
// the Authority gives no poll_after_ms.
type backoff struct {
	base time.Duration // the un-jittered step, doubling from MinPoll
	last time.Duration // the last delay returned
}

// pollDelay returns how long to wait before the next poll. With
// poll_after_ms it is that hint, raised to MinPoll and capped at
// 5 minutes. Without, it is an exponential backoff from
// MinPoll, doubling, capped at MaxPoll, with up to 25 % of jitter taken off
// each step; the delays never decrease and never go below MinPoll, so there
// is no tight loop.
func (c *Client) pollDelay(pollAfterMS *int64, b *backoff) time.Duration {
	if pollAfterMS != nil {
		ms := min(max(*pollAfterMS, 0), maxPollAfter.Milliseconds())
		return min(max(time.Duration(ms)*time.Millisecond, c.minPoll), maxPollAfter)
	}
	if b.base == 0 {
		b.base = c.minPoll
	} else {
		b.base = min(2*b.base, c.maxPoll)
	}
	j := min(max(c.jitter(), 0), 1)
	d := b.base - time.Duration(j*float64(b.base)/4)
	d = min(max(d, b.last, c.minPoll), c.maxPoll)
	b.last = d
	return d
}

// retryAfter parses a Retry-After header (delay-seconds or an HTTP date),
// capped at 24 hours; it returns 0 when the header is absent or invalid.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0
		}
		if s > int64(24*time.Hour/time.Second) {
			return 24 * time.Hour
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, 24*time.Hour)
		}
	}
	return 0
}
