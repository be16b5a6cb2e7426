package browser_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/browser"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
)

// browserGrant acquires and redeems a browser session at the real Service
// of an e2e network.
func browserInit(t *testing.T, e *e2e.Env) *harness.Initialization {
	t.Helper()
	c, err := harness.New(harness.Config{
		HarnessID:  "e2e-browser-agent",
		HTTPClient: e.Client,
		Discovery:  e.Discovery(t),
		Now:        e.Clock.Now,
		MinPoll:    (100 * time.Millisecond),
		// The network is on loopback.
		InsecureAllowPrivateNetworks: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g, err := c.Acquire(ctx, harness.Request{
		Service:     e2e.AppOrigin,
		User:        e2e.EnterpriseUser,
		Task:        pass.Task{Description: "Look at my tickets in the web app"},
		Type:        pass.BrowserSession,
		Destination: e2e.AppOrigin + "/tickets",
	})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	init, err := c.RedeemBrowserSession(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatalf("RedeemBrowserSession: %v", err)
	}
	return init
}

func pageUser(t *testing.T, s *browser.Session) string {
	t.Helper()
	text, err := chromedp.Run(s.Context(), chromedp.Text("#user"))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return text
}

// H-RED-7, §3.3.2, S-BRW: in headless Chromium the agent lands logged in on
// the destination page, with the hardening draft's form POST.
func TestE2EBrowserLandsLoggedIn(t *testing.T) {
	needChromium(t)
	e := e2e.New(t, e2e.Options{})
	init := browserInit(t, e)
	if init.Method != http.MethodPost {
		t.Errorf("initialization method %s, want POST (the Service offers it when the Harness lists it)", init.Method)
	}
	s, err := browser.Open(context.Background(), init, browserOptions(t, e.Net, e2e.AppHost))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if s.URL() != e2e.AppOrigin+"/tickets" || s.Status() != http.StatusOK {
		t.Errorf("landed on %s (%d), want %s/tickets (200)", s.URL(), s.Status(), e2e.AppOrigin)
	}
	if got := pageUser(t, s); got != "Logged in as "+e2e.EnterpriseUser {
		t.Errorf("page says %q", got)
	}
	if _, err := browser.Open(context.Background(), init, browserOptions(t, e.Net, e2e.AppHost)); !errors.Is(err, harness.ErrInitializationUsed) {
		t.Errorf("second Open of one initialization: %v, want ErrInitializationUsed", err)
	}
}

// §4.5: the same initialization loaded again in another browser is
// refused by the Service (410), and that browser has no session.
func TestE2EBrowserInitializationSingleUse(t *testing.T) {
	needChromium(t)
	e := e2e.New(t, e2e.Options{})
	req, err := browserInit(t, e).Take()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opts := browserOptions(t, e.Net, e2e.AppHost)

	first, err := browser.Launch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := first.Load(ctx, req); err != nil {
		t.Fatalf("first load: %v", err)
	}
	if got := pageUser(t, first); got != "Logged in as "+e2e.EnterpriseUser {
		t.Errorf("first browser page says %q", got)
	}

	second, err := browser.Launch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	err = second.Load(ctx, req)
	var ie *browser.InitializationError
	if !errors.As(err, &ie) || (ie.Status != http.StatusGone && ie.Status != http.StatusNotFound) {
		t.Fatalf("second load: %v, want a 404/410 InitializationError", err)
	}
	// No session in the second browser: the application refuses it.
	resp, err := chromedp.RunResponse(second.Context(), chromedp.Navigate(e2e.AppOrigin+"/tickets"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusUnauthorized {
		t.Errorf("second browser on /tickets: status %d, want 401", resp.Status)
	}
}
