package servicetest

import (
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// testRedeemRetry: a Redeem retried with the same records (its first
// answer lost with the connection) succeeds without storing anything
// twice, while the same delegation with another credential or token is
// still refused.
func testRedeemRetry(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	c := credential(d.AuthorizationID, service.KindBearer)
	if err := s.Redeem(ctx, d, c, nil); err != nil {
		t.Fatalf("Redeem: %v", err)
	}
	if err := s.Redeem(ctx, d, c, nil); err != nil {
		t.Errorf("retry of Redeem with the same credential = %v, want nil", err)
	}
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); !errors.Is(err, service.ErrConflict) {
		t.Errorf("Redeem of a taken id with another credential = %v, want ErrConflict", err)
	}
	if _, _, err := s.Credential(ctx, c.Hash, base); err != nil {
		t.Errorf("credential after the retry: %v", err)
	}

	d2 := delegation(uniq("authz"))
	in := initToken(d2.AuthorizationID)
	if err := s.Redeem(ctx, d2, nil, in); err != nil {
		t.Fatalf("Redeem with init: %v", err)
	}
	if err := s.Redeem(ctx, d2, nil, in); err != nil {
		t.Errorf("retry of Redeem with the same init token = %v, want nil", err)
	}
	if err := s.Redeem(ctx, d2, nil, initToken(d2.AuthorizationID)); !errors.Is(err, service.ErrConflict) {
		t.Errorf("Redeem of a taken id with another init token = %v, want ErrConflict", err)
	}
	// Another delegation cannot claim the records of the first.
	if err := s.Redeem(ctx, delegation(d.AuthorizationID), nil, in); !errors.Is(err, service.ErrConflict) {
		t.Errorf("Redeem of a taken id with another delegation's init token = %v, want ErrConflict", err)
	}
	if _, err := s.ConsumeInit(ctx, in.Hash, base.Add(time.Second)); err != nil {
		t.Errorf("init token after the retry: %v", err)
	}
	if _, err := s.ConsumeInit(ctx, in.Hash, base.Add(time.Second)); !errors.Is(err, service.ErrInitUsed) {
		t.Errorf("init token stored twice: second ConsumeInit = %v, want ErrInitUsed", err)
	}
}

// testTwoServices: two Service instances (replicas, same Origin and keys)
// sharing the store under test serve 100 concurrent browser
// initializations with one token over loopback HTTPS; exactly one starts
// a session (303 with a cookie), the others get 410: the token is marked
// used atomically, so one leaked URL never opens two sessions.
func testTwoServices(t *testing.T, s service.Store) {
	n := testnet.New(t)
	now := func() time.Time { return base.Add(time.Second) }
	replicas, err := deploy.Services(n, service.Config{
		Origin: "https://app.test", Name: "Tickets", Store: s, Now: now,
		Scopes:           []pass.ScopeInfo{{Name: "tickets:read"}, {Name: "tickets:write"}},
		TrustedFederated: []pass.AuthorityRef{{Authority: "https://fed.test", AuthorityConfigurationURL: "https://fed.test/agentpass"}},
		RateLimits:       service.RateLimits{Initialize: deploy.Unlimited()},
	}, deploy.Stores{}, deploy.Stores{})
	if err != nil {
		t.Fatal(err)
	}
	initURLs := []string{
		n.Serve("app.test", replicas[0]) + "/agentpass" + "/initialize",
		n.Serve("app-replica.test", replicas[1]) + "/agentpass" + "/initialize",
	}
	d := delegation(uniq("authz"))
	tok := secret.Token("init_")
	in := initToken(d.AuthorizationID)
	in.Hash = secret.Hash(tok)
	if err := s.Redeem(ctx, d, nil, in); err != nil {
		t.Fatal(err)
	}
	client := *n.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var sessions, gone atomic.Int32
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			resp, err := client.Get(initURLs[i%2] + "?token=" + url.QueryEscape(tok))
			if err != nil {
				t.Errorf("initialize: %v", err)
				return
			}
			defer resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusSeeOther && len(resp.Cookies()) == 1:
				sessions.Add(1)
			case resp.StatusCode == http.StatusGone:
				gone.Add(1)
			default:
				t.Errorf("initialize: %s", resp.Status)
			}
		})
	}
	wg.Wait()
	if sessions.Load() != 1 || gone.Load() != 99 {
		t.Fatalf("sessions: %d, 410: %d; want 1 and 99", sessions.Load(), gone.Load())
	}
}
