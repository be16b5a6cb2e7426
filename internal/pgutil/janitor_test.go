package pgutil_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/pgutil"
)

// TestRunJanitor: the janitor prunes at once and on every tick, survives
// failing prunes, and stops with its context.
func TestRunJanitor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- pgutil.RunJanitor(ctx, time.Millisecond, nil, "test", func(context.Context) (int64, error) {
			if calls.Add(1)%2 == 0 {
				return 0, errors.New("database down")
			}
			return 1, nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("janitor made %d calls in 10s", calls.Load())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("RunJanitor returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("janitor did not stop with its context")
	}
	n := calls.Load()
	time.Sleep(20 * time.Millisecond)
	if calls.Load() != n {
		t.Fatal("janitor kept pruning after it returned")
	}
}
