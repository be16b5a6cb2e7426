package harness_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// network starts the loopback AgentPass network the examples run against:
// a ticket application at https://app.test (an AgentPass Service), the
// Enterprise Authority of corp.test, a Service Authority and two Federated
// Authorities, with DNS and TLS. A real Harness leaves Config.HTTPClient and
// Config.Discovery nil and reaches the Internet.
func network(opts e2e.Options) (*e2e.Env, harness.Config) {
	n, err := e2e.Start(opts)
	if err != nil {
		log.Fatal(err)
	}
	return n, harness.Config{
		HarnessID:  "acme-build-bot",
		HTTPClient: n.Client,
		Discovery:  n.NewDiscovery(),
		MinPoll:    (100 * time.Millisecond),
		// The example network is on loopback.
		InsecureAllowPrivateNetworks: true,
	}
}

// The common path: acquire a pass for one task, redeem it for a bearer token
// with only the scope the task needs, and call the Service's API.
func Example() {
	n, cfg := network(e2e.Options{})
	defer n.Close()
	ctx := context.Background()

	c, err := harness.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	g, err := c.Acquire(ctx, harness.Request{
		Service: "https://app.test",
		User:    "alex@corp.test",
		Task:    pass.Task{ID: "task-42", Description: "List my open tickets"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved by", g.Authority, "for", g.User)

	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{RequestedScope: pass.Scope{"tickets:read"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok) // the value stays hidden

	api := tok.HTTPClient(n.Client) // adds Authorization: Bearer, only for https://app.test
	resp, err := api.Get("https://app.test/api/tickets")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	if err := harness.CheckResponse(resp); err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(strings.TrimSpace(string(body)))

	// The grant was single-use.
	_, err = c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	fmt.Println(errors.Is(err, harness.ErrGrantUsed))
	// Output:
	// approved by https://idp.corp.test for alex@corp.test
	// Token{Bearer for https://app.test, scope [tickets:read], value hidden}
	// {"agent":"acme-build-bot","scope":["tickets:read"],"user":"alex@corp.test"}
	// true
}

// When the Service offers federated Authorities, the Harness asks a person
// which one to use; the chooser must return one of the options.
func ExampleConfig_chooseAuthority() {
	n, cfg := network(e2e.Options{Service: func(c *service.Config) { c.ServiceAuthority = nil }})
	defer n.Close()

	cfg.ChooseAuthority = func(_ context.Context, options []pass.AuthorityRef) (pass.AuthorityRef, error) {
		for i, o := range options {
			fmt.Printf("%d) %s\n", i+1, o.Authority)
		}
		return options[1], nil // the person picked the second one
	}
	c, err := harness.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	g, err := c.Acquire(context.Background(), harness.Request{
		Service: "https://app.test",
		User:    "sam@solo.test", // a domain without an Enterprise Authority
		Task:    pass.Task{Description: "List my open tickets"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved by", g.Authority, "("+string(g.Branch)+")")
	// Output:
	// 1) https://fed.test
	// 2) https://fed2.test
	// approved by https://fed2.test (federated)
}

// Without a chooser the Client never picks a federated Authority silently:
// show the options, then ask again with the chosen one.
func ExampleChoiceRequiredError() {
	n, cfg := network(e2e.Options{Service: func(c *service.Config) { c.ServiceAuthority = nil }})
	defer n.Close()
	c, err := harness.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	req := harness.Request{Service: "https://app.test", User: "sam@solo.test", Task: pass.Task{Description: "List my open tickets"}}

	_, err = c.Acquire(context.Background(), req)
	var choice *harness.ChoiceRequiredError
	if errors.As(err, &choice) {
		fmt.Println("choose one of", len(choice.Options), "authorities")
		req.Authority = choice.Options[0].Authority
	}
	g, err := c.Acquire(context.Background(), req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved by", g.Authority)
	// Output:
	// choose one of 2 authorities
	// approved by https://fed.test
}

// While a person decides, Progress reports the approval page to show the
// User; a denial is a typed error with the reason.
func ExampleConfig_progress() {
	n, cfg := network(e2e.Options{Approver: authority.Manual{}})
	defer n.Close()

	cfg.Progress = func(p harness.Progress) {
		switch p.Event {
		case harness.EventRequestCreated:
			// The link names the mission, never the request id (the
			// polling secret).
			fmt.Println("approve at", p.ApprovalURL[:strings.LastIndex(p.ApprovalURL, "/")+1]+"…")
		case harness.EventPending:
			// Meanwhile, the User's manager refuses on the Authority's page.
			_, _ = n.Enterprise.Decide(context.Background(), pendingMission(n.Enterprise), authority.Decision{
				Outcome: authority.Deny, Reason: "use the staging tracker",
			})
		case harness.EventDenied:
			fmt.Println("denied:", p.Reason)
		}
	}
	c, err := harness.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Acquire(context.Background(), harness.Request{
		Service: "https://app.test",
		User:    "alex@corp.test",
		Task:    pass.Task{Description: "Close stale tickets"},
	})
	var denied *harness.DeniedError
	fmt.Println(errors.As(err, &denied), errors.Is(err, harness.ErrDenied))
	// Output:
	// approve at https://idp.corp.test/approve/…
	// denied: use the staging tracker
	// true true
}

// A browser session: the redemption gives an initialization to load once in
// a browser (package harness/browser does it with Chromium).
func ExampleClient_RedeemBrowserSession() {
	n, cfg := network(e2e.Options{})
	defer n.Close()
	ctx := context.Background()
	c, err := harness.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	g, err := c.Acquire(ctx, harness.Request{
		Service:     "https://app.test",
		User:        "alex@corp.test",
		Task:        pass.Task{Description: "Look at my tickets"},
		Type:        pass.BrowserSession,
		Destination: "https://app.test/tickets",
	})
	if err != nil {
		log.Fatal(err)
	}
	init, err := c.RedeemBrowserSession(ctx, g, harness.RedeemOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(init) // the secret stays hidden

	// Without Chromium: submit the form once with a cookie-keeping client.
	req, err := init.Take()
	if err != nil {
		log.Fatal(err)
	}
	form := make(map[string][]string)
	for k, v := range req.FormFields {
		form[k] = []string{v}
	}
	browserLike := *n.Client
	browserLike.Jar = newJar()
	resp, err := browserLike.PostForm(req.URL, form)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Request.URL, strings.Contains(string(page), "Logged in as alex@corp.test"))

	_, err = init.Take()
	fmt.Println(errors.Is(err, harness.ErrInitializationUsed))
	// Output:
	// Initialization{POST https://app.test/agentpass/initialize with 1 hidden form fields}
	// https://app.test/tickets true
	// true
}

// CheckResponse turns an API refusal into a typed error; nothing is
// re-acquired behind the caller's back.
func ExampleCheckResponse() {
	n, cfg := network(e2e.Options{})
	defer n.Close()
	ctx := context.Background()
	c, err := harness.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	g, err := c.Acquire(ctx, harness.Request{Service: "https://app.test", User: "alex@corp.test", Task: pass.Task{Description: "Read tickets"}})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{RequestedScope: pass.Scope{"tickets:read"}})
	if err != nil {
		log.Fatal(err)
	}
	resp, err := tok.HTTPClient(n.Client).Post("https://app.test/api/tickets", "application/json", strings.NewReader(`{"title":"x"}`))
	if err != nil {
		log.Fatal(err)
	}
	err = harness.CheckResponse(resp)
	var apiErr *harness.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode, apiErr.Code, errors.Is(err, harness.ErrForbidden), errors.Is(err, pass.ErrScope))
	}

	// The token is never sent to another origin.
	_, err = tok.HTTPClient(n.Client).Get("https://fed.test/")
	fmt.Println(errors.Is(err, harness.ErrCrossOrigin))
	// Output:
	// 403 insufficient_scope true true
	// true
}

func newJar() http.CookieJar {
	jar, err := cookiejar.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	return jar
}
