package sandbox_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/browser"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// appliedStore tells through applied every security event the to-do
// Service applied, so the test waits for it instead of sleeping.
type appliedStore struct {
	service.Store
	applied chan string
}

func (s *appliedStore) ApplyEvent(ctx context.Context, e service.MissionEvent) (bool, error) {
	ok, err := s.Store.ApplyEvent(ctx, e)
	if ok && err == nil {
		select {
		case s.applied <- e.AuthorizationID:
		default:
		}
	}
	return ok, err
}

// TestRevokeInChromiumPushes (#23): a person revokes an authorization on
// the approval page in headless Chromium; the Authority pushes the event
// and the agent's next call is refused at once, although the Service
// would check with the Authority only a minute later.
func TestRevokeInChromiumPushes(t *testing.T) {
	exe := testnet.Chromium(t)
	store := &appliedStore{Store: service.NewMemoryStore(), applied: make(chan string, 8)}
	e := newEnvWith(t, true, func(o *sandbox.Options) {
		o.EventDelivery = pass.DeliveryPush
		o.CheckInterval = (60 * time.Second)
		o.ServiceStore = store
	})
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = e.sb.Enterprise.RunEventTransmitter(runCtx)
	}()
	t.Cleanup(func() { stop(); <-ran })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := e.agent.Acquire(ctx, harness.Request{Service: e.sb.TodoOrigin, User: sandbox.UserEnterprise, Task: pass.Task{Description: "Summarise my to-do list"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.agent.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	api := tok.HTTPClient(e.n.Client())
	get := func() int {
		resp, err := api.Get(e.sb.TodoOrigin + "/api/todos")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get(); st != http.StatusOK {
		t.Fatalf("before: %d", st)
	}
	auths, err := e.sb.Enterprise.Authorizations(ctx, authority.ListOptions{})
	if err != nil || len(auths) != 1 {
		t.Fatalf("authorizations %v, %v", auths, err)
	}

	addr := e.n.Addr(sandbox.EnterpriseHost)
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sandbox.EnterpriseHost, RootCAs: e.n.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	spki := browser.SPKIHash(conn.ConnectionState().PeerCertificates[0])
	conn.Close()
	host, _, _ := net.SplitHostPort(addr)
	sess, err := browser.Launch(ctx, browser.Options{
		ExecPath:            exe,
		InsecureTrustedSPKI: []string{spki},
		Flags:               map[string]any{"host-resolver-rules": "MAP " + sandbox.EnterpriseHost + " " + host + ", MAP * ~NOTFOUND"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	tab, cancelTab := context.WithTimeout(sess.Context(), 45*time.Second)
	defer cancelTab()
	form := `form.revoke[data-authorization="` + auths[0].ID + `"]`
	if err := chromedp.Do(tab,
		chromedp.Navigate(e.page()),
		chromedp.WaitVisible(`#whoami`),
		chromedp.WaitVisible(form),
		chromedp.SetValue(form+` input[name=reason]`, "laptop lost"),
		chromedp.Click(form+` button`),
		chromedp.WaitNotPresent(form),
	); err != nil {
		t.Fatal(err)
	}
	select {
	case <-store.applied:
	case <-ctx.Done():
		t.Fatal("the revocation was never pushed to the Service")
	}
	if st := get(); st != http.StatusUnauthorized {
		t.Fatalf("the agent's next call: %d, want 401 at once", st)
	}
	a, err := e.sb.Enterprise.Authorization(ctx, auths[0].ID)
	if err != nil || a.State != pass.DelegationRevoked || a.StateBy != sandbox.DevnetOperator {
		t.Errorf("after revoking on the page: %+v, %v", a, err)
	}
}
