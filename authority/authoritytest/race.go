package authoritytest

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
)

// testTwoAuthorities: two Authority instances (replicas) sharing the store
// under test serve 100 concurrent validations of one pass over loopback
// HTTPS; exactly one answers 200, the others 409 (A-VAL-8).
func testTwoAuthorities(t *testing.T, s authority.Store) {
	n := testnet.New(t)
	now := func() time.Time { return T0.Add(time.Minute) }
	ks, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	const id = "https://idp.test"
	var origins []string
	for _, host := range []string{"idp.test", "idp-replica.test"} {
		dc := n.DiscoveryConfig()
		dc.Now = now
		disc, err := discovery.New(dc)
		if err != nil {
			t.Fatal(err)
		}
		a, err := authority.New(authority.Config{
			Identifier: id, TrustMode: pass.TrustFederated, Keys: ks, Store: s, Discovery: disc,
			HTTPClient: n.Client(), InsecureAllowPrivateNetworks: true, Now: now,
		})
		if err != nil {
			t.Fatal(err)
		}
		origins = append(origins, n.Serve(host, a))
	}
	svc := NewService(n, "todo.test", id+authority.PathConfiguration, now)
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
	var ok, conflict atomic.Int32
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := svc.Post(n.Client(), origins[i%2]+authority.PathValidate, id,
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
