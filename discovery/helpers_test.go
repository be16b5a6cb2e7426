package discovery

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

// fakeClock is a settable clock for expiry decisions.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestClient returns a client whose only nameserver is srv, with a fake
// clock and a short DNS timeout; mod may change the config.
func newTestClient(t testing.TB, srv *dnstest.Server, mod func(*Config)) (*Client, *fakeClock) {
	t.Helper()
	clk := newClock()
	cfg := Config{
		Nameservers: []string{srv.Nameserver()},
		DNSTimeout:  300 * time.Millisecond,
		Now:         clk.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, clk
}

// outcome names the one class an error belongs to, and fails the test when
// it belongs to several (the four outcomes must be distinguishable).
func outcome(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return "ok"
	}
	classes := []struct {
		name string
		err  error
	}{
		{"no-record", ErrNoRecord},
		{"none", ErrDelegationDisabled},
		{"lookup-failed", ErrLookupFailed},
		{"invalid-record", ErrInvalidRecord},
		{"invalid-name", ErrInvalidName},
		{"fetch-failed", ErrFetchFailed},
		{"invalid-document", ErrInvalidDocument},
	}
	var got []string
	for _, c := range classes {
		if errors.Is(err, c.err) {
			got = append(got, c.name)
		}
	}
	if len(got) == 0 {
		t.Fatalf("error %v matches no class", err)
	}
	if len(got) > 1 && !(len(got) == 2 && got[0] == "fetch-failed" && got[1] == "invalid-document") {
		return strings.Join(got, "+")
	}
	return got[0]
}

func bg() context.Context { return context.Background() }
