package harness_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// G-2, A-STAT-5, H-POLL-4, H-POLL-5: the Authority's default rate limits
// never trip a Harness that polls a pending request as fast as it ever
// does. The Authority asks for a poll every millisecond (raised to the
// Harness's floor, MinPollFloor = 100 ms, stricter than the 250 ms
// default), nobody decides for a simulated 90 seconds (900 polls, well
// past the status burst, so the refill rate is what counts), then a person
// approves. The Harness's waits advance the shared clock, which is also
// the Authority's and its limiter's. No request is refused with 429.
func TestE2EPollingWithinDefaultRateLimits(t *testing.T) {
	logs := &lockedBuffer{}
	e := e2e.New(t, e2e.Options{Approver: authority.Manual{}, Authority: func(c *authority.Config) {
		c.PollAfter = time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		// RateLimits left zero: the defaults.
	}})
	const waitFor = 90 * time.Second
	var (
		start time.Time
		polls int
	)
	c := newClient(t, e, func(cfg *harness.Config) {
		cfg.Progress = func(p harness.Progress) {
			switch p.Event {
			case harness.EventRequestCreated:
				start = e.Clock.Now()
			}
		}
	})
	var waited []time.Duration
	decided := false
	harness.SetSleep(c, func(ctx context.Context, d time.Duration) error {
		waited = append(waited, d)
		e.Clock.Advance(d)
		polls++ // each wait is followed by a poll
		if !decided && e.Clock.Now().Sub(start) >= waitFor {
			decided = true
			if _, err := e.Enterprise.Decide(context.Background(), pendingMission(e.Enterprise), authority.Decision{Outcome: authority.Approve, DecidedBy: "human:manager@corp.test"}); err != nil {
				t.Errorf("Decide: %v", err)
			}
		}
		return ctx.Err()
	})
	g, err := c.Acquire(context.Background(), task(e2e.EnterpriseUser))
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if g.AgentPass().Type != pass.BearerToken {
		t.Errorf("pass type %s", g.AgentPass().Type)
	}
	if polls < 850 {
		t.Errorf("%d polls, want about 900 (one every 100 ms for 90 s)", polls)
	}
	for _, d := range waited {
		if d != (100 * time.Millisecond) {
			t.Fatalf("waited %v, want only poll delays of %v (a longer wait is a Retry-After)", d, (100 * time.Millisecond))
		}
	}
	if n := strings.Count(logs.String(), "agentpass rate limited"); n != 0 {
		t.Fatalf("the Authority refused %d requests with 429", n)
	}
}
