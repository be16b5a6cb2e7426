package authority_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// waitSignal is a MemoryStore that says when a long poll starts waiting.
type waitSignal struct {
	*authority.MemoryStore
	waiting chan struct{}
}

func (s waitSignal) WaitEvents(ctx context.Context, after int64) (int64, error) {
	if after >= 0 {
		s.waiting <- struct{}{}
	}
	return s.MemoryStore.WaitEvents(ctx, after)
}

// Review O6: one Service holds at most two long polls at once; its third
// is answered at once, and another Service's long poll still waits.
func TestReviewLongPollsPerService(t *testing.T) {
	store := waitSignal{authority.NewMemoryStore(), make(chan struct{}, 16)}
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = store })
	other := deploy.NewTestService(e.net, otherHost, e.auth.ConfigurationURL(), e.clock.Now)
	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		status int
		out    pass.PollResponse
		err    error
	}
	poll := func(svc *deploy.TestService) chan answer {
		done := make(chan answer, 1)
		go func() {
			b, _ := json.Marshal(pass.PollRequest{})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/events/poll", bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+svc.Assertion(authID))
			var a answer
			resp, err := e.net.Client().Do(req)
			if a.err = err; err == nil {
				a.status = resp.StatusCode
				a.err = json.NewDecoder(resp.Body).Decode(&a.out)
				resp.Body.Close()
			}
			done <- a
		}()
		return done
	}
	var pending []chan answer
	t.Cleanup(func() {
		cancel()
		for _, p := range pending {
			<-p
		}
	})
	for i := range 2 {
		p := poll(e.svc)
		pending = append(pending, p)
		select {
		case <-store.waiting:
		case a := <-p:
			t.Fatalf("long poll %d answered at once: %d %v", i+1, a.status, a.err)
		}
	}
	select {
	case a := <-poll(e.svc):
		if a.err != nil || a.status != http.StatusOK || len(a.out.Sets) != 0 {
			t.Errorf("third long poll: %d %+v %v, want an empty answer", a.status, a.out, a.err)
		}
	case <-store.waiting:
		t.Fatal("a Service's third long poll waits")
	}
	p := poll(other)
	pending = append(pending, p)
	select {
	case <-store.waiting:
	case a := <-p:
		t.Fatalf("another Service's long poll answered at once: %d %v", a.status, a.err)
	}
}
