package authoritytest_test

import (
	"context"
	"fmt"
	"io"
	"log"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/pass"
)

// A company's own Enterprise Authority, with its own approval rules, on a
// network with a real Service and DNS: an agent asks for both scopes, the
// Authority's rule grants reading only, and the Service enforces it. In a
// test, call authoritytest.NewServer(t, cfg, nil): it stops with the test.
func ExampleStart() {
	srv, err := authoritytest.Start(authority.Config{
		Identifier: "https://agents.example.test",
		TrustMode:  pass.TrustEnterprise,
		Approver: authority.ApproverFunc(func(ctx context.Context, r *authority.Request) (authority.Decision, error) {
			return authority.Decision{Outcome: authority.Approve, Scope: pass.Scope{"read"}, DecidedBy: "rule:read-only"}, nil
		}),
	}, &authoritytest.Options{User: "alex@example.test"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	agent, err := srv.Agent(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	resp, err := agent.Get(srv.URL + "/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output:
	// {"agent":"test-harness","authority":"https://agents.example.test","scope":["read"],"user":"alex@example.test"}
}
