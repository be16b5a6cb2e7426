package replicatest

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// TestFoldedProofSingleUse: with the harness proof's replay record folded
// into Redeem's statement (#19 item 6), one proof presented on two Service
// replicas at once, with two passes of its holder key (a proof without
// aph, which any pass of the key accepts), yields at most one credential
// (G-3). OnDelegation holds both redemptions until both have passed
// Precheck's lookup and the Authority, so the fold alone decides: one
// credential, and the other answer is the replay's invalid_harness_proof
// with nothing stored.
func TestFoldedProofSingleUse(t *testing.T) {
	var (
		mu      sync.Mutex
		arrived int
		both    = make(chan struct{})
	)
	barrier := func(ctx context.Context, _ *service.Delegation) error {
		mu.Lock()
		if arrived++; arrived == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d := deploy(t, options{replicas: 2, postgres: true, countTrips: true, onDelegation: barrier})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	key, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	values := d.storePasses(t, 2, key)
	proof, err := key.HarnessProof(dpop.ProofParams{
		HarnessID: harnessID, Audience: appOrigin, Method: http.MethodPost, URL: d.redeemURL,
		TTL: time.Minute, Now: d.clock.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, v := range values {
		wg.Go(func() {
			_, errs[i] = d.redeem(ctx, i, pass.RedemptionRequest{
				AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: v}, Authority: authorityID,
				User: pass.User{Email: user}, HarnessProof: &pass.JWTContainer{JWT: proof},
			})
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		if err == nil {
			ok++
			continue
		}
		if _, code := errorCode(err); code != pass.CodeInvalidHarnessProof || !strings.Contains(err.Error(), "replayed") {
			t.Errorf("replica %d: %v, want invalid_harness_proof for the replay", i, err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d credentials for one proof, want 1: %v", ok, errs)
	}
	for table, want := range map[string]int{"agentpass_service_delegations": 1, "agentpass_service_credentials": 1} {
		var n int
		if err := d.svcPool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s: %d rows, want %d", table, n, want)
		}
	}
	// The proof is recorded: presented again with the first pass (now
	// consumed), it is refused at Precheck, before the Authority.
	_, err = d.redeem(ctx, 0, pass.RedemptionRequest{
		AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: values[0]}, Authority: authorityID,
		User: pass.User{Email: user}, HarnessProof: &pass.JWTContainer{JWT: proof},
	})
	if _, code := errorCode(err); code != pass.CodeInvalidHarnessProof {
		t.Errorf("third presentation: %v, want invalid_harness_proof", err)
	}
}
