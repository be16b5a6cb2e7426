package harnesstest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"

	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/harnesstest"
	"github.com/agentpass-go/agentpass/pass"
)

// An agent's whole path against a real Authority and Service: acquire a
// pass for a task, redeem it for a token with only the scope the task
// needs, and call the Service. In a test, call
// harnesstest.NewNetwork(t, nil) instead: it stops with the test.
func ExampleStart() {
	n, err := harnesstest.Start(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()

	g, err := n.Harness.Acquire(ctx, harness.Request{
		Service: n.URL, User: n.User,
		Task: pass.Task{ID: "task-1", Description: "List my open tickets"},
	})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := n.Harness.RedeemBearerToken(ctx, g, harness.RedeemOptions{RequestedScope: pass.Scope{"read"}})
	if err != nil {
		log.Fatal(err)
	}
	resp, err := tok.HTTPClient(n.Client).Get(n.URL + "/tickets")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var who struct {
		User  string   `json:"user"`
		Scope []string `json:"scope"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&who); err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved by", g.Authority)
	fmt.Println("the Service sees", who.User, who.Scope)
	// Output:
	// approved by https://idp.corp.test
	// the Service sees alex@corp.test [read]
}
