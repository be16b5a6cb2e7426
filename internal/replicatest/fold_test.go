package replicatest

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// TestValidateReplayRaceAcrossReplicas (#19 item 6, G-8, A-VAL-8): one
// assertion presented at once to both Authority replicas, each with a good
// pass of its own, where each records it in the round trip of its
// consumption's read: exactly one validation succeeds, the other is
// refused as a replay before its pass was consumed (the pass then
// validates with a fresh assertion).
func TestValidateReplayRaceAcrossReplicas(t *testing.T) {
	d := deploy(t, options{replicas: 2, postgres: true})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	key, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 12
	values := d.storePasses(t, 2*rounds, key)
	sign := func() string {
		t.Helper()
		tok, err := assertion.Sign(d.serviceKeys.Current(), appOrigin, authorityID, 0, d.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	validate := func(replica int, tok, value string) error {
		_, err := httpx.Do(ctx, d.client, httpx.Call{
			URL: d.validateURL, Bearer: tok, Header: http.Header{pinHeader: {strconv.Itoa(replica)}},
			Body: pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}},
		}, &pass.ValidationResponse{})
		return err
	}
	for i := range rounds {
		tok := sign()
		errs := make([]error, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for r := range 2 {
			wg.Go(func() {
				<-start
				errs[r] = validate(r, tok, values[2*i+r])
			})
		}
		close(start)
		wg.Wait()
		ok := 0
		for r, err := range errs {
			var pe *pass.PeerError
			switch {
			case err == nil:
				ok++
			case errors.As(err, &pe) && pe.Code == pass.CodeInvalidAssertion:
				if err := validate(r, sign(), values[2*i+r]); err != nil {
					t.Errorf("round %d: the refused replica's pass with a fresh assertion: %v", i, err)
				}
			default:
				t.Errorf("round %d, replica %d: %v", i, r, err)
			}
		}
		if ok != 1 {
			t.Errorf("round %d: %d validations succeeded with one assertion, want 1: %v", i, ok, errs)
		}
	}
}
