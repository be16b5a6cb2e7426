package harness_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
)

// An agent's tool-calling loop. A model picks the next tool; every tool
// call gets its token from one TokenSource and allows itself a short
// deadline. A call that gives up while a person decides fails with
// ErrPending and the request stays open for the next call, so the
// approver sees one request for the task. When the delegation is revoked,
// the loop ends instead of asking again.
func ExampleTokenSource_toolLoop() {
	n, cfg := network(e2e.Options{Approver: authority.Manual{}}) // a person decides
	defer n.Close()
	shown := make(chan string, 1)
	cfg.Progress = func(p harness.Progress) {
		if p.Event == harness.EventPending {
			shown <- p.ApprovalURL // a real agent shows this page to the User
		}
	}
	c, err := harness.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ts := c.TokenSource(harness.Request{
		Service: "https://app.test",
		User:    "alex@corp.test",
		Task:    pass.Task{Description: "Triage my open tickets"},
	}, harness.TokenSourceOptions{RetryInvalidToken: true, Reacquire: true})
	defer ts.Close()
	api := &http.Client{Transport: ts.Transport(n.Client.Transport)}

	// callTool runs one tool with its own deadline.
	callTool := func(name string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		method, body := http.MethodGet, ""
		if name == "create_ticket" {
			method, body = http.MethodPost, `{"title":"Flaky login test"}`
		}
		req, _ := http.NewRequestWithContext(ctx, method, "https://app.test/api/tickets", strings.NewReader(body))
		resp, err := api.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if err := harness.CheckResponse(resp); err != nil {
			return "", err
		}
		var out struct{ User string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return "", err
		}
		return "done as " + out.User, nil
	}

	// A scripted stand-in for the model.
	model := []string{"list_tickets", "list_tickets", "create_ticket", "list_tickets", "create_ticket"}
	for step, tool := range model {
		if step == 3 {
			revokeAll(n) // meanwhile, an administrator revokes the delegation
		}
		out, err := callTool(tool)
		switch {
		case errors.Is(err, harness.ErrPending):
			fmt.Println(tool + ": waiting for approval")
			approve(n, <-shown) // the person opens the page and approves
			continue
		case errors.Is(err, pass.ErrRevoked):
			fmt.Println(tool + ": the delegation was revoked, stopping")
		case err != nil:
			fmt.Println(tool+":", err)
		default:
			fmt.Println(tool+":", out)
			continue
		}
		break
	}
	_, err = ts.Token(context.Background())
	fmt.Println("token source ended:", errors.Is(err, pass.ErrRevoked))
	// Output:
	// list_tickets: waiting for approval
	// list_tickets: done as alex@corp.test
	// create_ticket: done as alex@corp.test
	// list_tickets: the delegation was revoked, stopping
	// token source ended: true
}

// revokeAll revokes every delegation of the Enterprise Authority and lets
// the Service's next check see it.
func revokeAll(n *e2e.Env) {
	ctx := context.Background()
	auths, err := n.Enterprise.Authorizations(ctx, authority.ListOptions{Now: n.Clock.Now()})
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range auths {
		if _, err := n.Enterprise.Revoke(ctx, a.ID, "admin@corp.test", "laptop lost"); err != nil {
			log.Fatal(err)
		}
	}
	n.Clock.Advance((30 * time.Second) + time.Second)
}

// approve stands in for the person who opens the approval page.
func approve(n *e2e.Env, page string) {
	if page == "" {
		log.Fatal("no approval page")
	}
	_, err := n.Enterprise.Decide(context.Background(), pendingMission(n.Enterprise), authority.Decision{
		Outcome: authority.Approve, DecidedBy: "human:alex@corp.test",
	})
	if err != nil {
		log.Fatal(err)
	}
}
