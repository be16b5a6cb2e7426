package authoritytest

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// testTwoAuthorities: two Authority instances (replicas) sharing the store
// under test serve 100 concurrent validations of one pass over loopback
// HTTPS; exactly one answers 200, the others 409: a pass stays single-use
// whichever replica validates it.
func testTwoAuthorities(t *testing.T, s authority.Store) {
	n := testnet.New(t)
	now := func() time.Time { return T0.Add(time.Minute) }
	const id = "https://idp.test"
	replicas, err := deploy.Authorities(n, authority.Config{
		Identifier: id, TrustMode: pass.TrustFederated, Store: s, Now: now,
	}, deploy.Stores{}, deploy.Stores{})
	if err != nil {
		t.Fatal(err)
	}
	origins := []string{n.Serve("idp.test", replicas[0]), n.Serve("idp-replica.test", replicas[1])}
	svc := deploy.NewTestService(n, "todo.test", id+"/configuration", now)
	value := secret.Token("ap_")
	r := NewRequest("req-race")
	r.Service = svc.Origin
	r.Status = pass.StatusApproved
	e := Approval("tickets:read")
	r.Decision = &e
	r.PassHash = secret.Hash(value)
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	// Each replica first discovers the Service (DNS, configuration, keys)
	// with a pass it does not know, so that the burst below races on the
	// consumption alone rather than on cold discovery under load.
	for _, origin := range origins {
		status, body, err := svc.Post(n.Client(), origin+"/validate", id,
			pass.ValidationRequest{AgentPass: pass.PassValue{Value: secret.Token("ap_")}})
		if err != nil || status != http.StatusNotFound {
			t.Fatalf("warm-up validation at %s: %d %s %v, want 404", origin, status, body, err)
		}
	}
	var ok, conflict atomic.Int32
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := svc.Post(n.Client(), origins[i%2]+"/validate", id,
				pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}})
			switch {
			case err != nil:
				t.Errorf("validate: %v", err)
			case status == http.StatusOK:
				ok.Add(1)
			case status == http.StatusConflict:
				conflict.Add(1)
			default:
				t.Errorf("validate: %d %s", status, body)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || conflict.Load() != 99 {
		t.Fatalf("200: %d, 409: %d; want 1 and 99", ok.Load(), conflict.Load())
	}
	list, err := s.Authorizations(ctx, authority.ListOptions{Now: now()})
	if err != nil || len(list) != 1 {
		t.Fatalf("authorizations: %d %v", len(list), err)
	}
}
