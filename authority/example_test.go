package authority_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// A policy: block one harness, approve read scopes for attested harnesses,
// leave everything else to a person.
func ExampleRules() {
	policy := authority.Rules(
		authority.Rule{Name: "blocked", Harnesses: []string{"evil-bot"}, Outcome: authority.Deny, Reason: "harness blocked"},
		authority.Rule{
			Name: "attested-read", Tiers: []dpop.Tier{dpop.TierAttested},
			Outcome: authority.Approve, Grant: authority.ScopesWithSuffix(":read"),
		},
	)
	available := pass.Scope{"tickets:read", "tickets:write", "users:read"}
	for _, r := range []*authority.Request{
		{HarnessID: "claude-code", Tier: dpop.TierAttested, AvailableScope: available},
		{HarnessID: "my-script", Tier: dpop.TierUnverified, AvailableScope: available},
		{HarnessID: "evil-bot", Tier: dpop.TierAttested, AvailableScope: available},
	} {
		d, _ := policy.Decide(context.Background(), r)
		fmt.Printf("%s: %s %v (by %q, reason %q)\n", r.HarnessID, d.Outcome, d.Scope, d.DecidedBy, d.Reason)
	}
	// Output:
	// claude-code: approve [tickets:read users:read] (by "rule:attested-read", reason "")
	// my-script: pending [] (by "", reason "")
	// evil-bot: deny [] (by "rule:blocked", reason "harness blocked")
}

// A whole issuance on a loopback network: an Enterprise Authority whose
// requests wait for a person, a Service, and a Harness that requests,
// polls and hands the pass to the Service, which validates it.
func Example() {
	n, err := testnet.Start()
	if err != nil {
		panic(err)
	}
	defer n.Close()

	keys, _ := dpop.GenerateKeySet()
	a, err := authority.New(authority.Config{
		Identifier:                   "https://idp.corp.test",
		TrustMode:                    pass.TrustEnterprise,
		Keys:                         keys,
		Discovery:                    n.Discovery(),
		HTTPClient:                   n.Client(),
		InsecureAllowPrivateNetworks: true, // the loopback network of this example
		OnPending: func(_ context.Context, r authority.Request) {
			fmt.Println("notify approver:", r.User, "wants", r.AgentID, "on", r.Service)
		},
	})
	if err != nil {
		panic(err)
	}
	n.Serve("idp.corp.test", a)
	n.PublishEnterprise("corp.test", a.ConfigurationURL())
	svc := deploy.NewTestService(n, "todo.test", a.ConfigurationURL(), nil)

	// The Harness asks for a pass (no holder key: a plain v0.1 harness).
	body, _ := json.Marshal(pass.IssuanceRequest{
		Type: pass.BearerToken, Service: pass.ServiceRef{Origin: "https://todo.test"},
		User: pass.User{Email: "alex@corp.test"}, Harness: pass.HarnessInfo{ID: "my-agent"},
		Task: pass.Task{ID: "t1", Description: "Triage open tickets"},
	})
	resp, err := n.Client().Post(a.Configuration().Endpoints.Issuance, "application/json", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	var st pass.IssuanceStatus
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	fmt.Println("issuance:", resp.StatusCode, st.Status)

	// A person approves a narrower scope in the approval UI.
	if _, err := a.Decide(context.Background(), st.Mission.ID, authority.Decision{
		Outcome: authority.Approve, Scope: pass.Scope{"tickets:read"}, DecidedBy: "human:boss@corp.test",
	}); err != nil {
		panic(err)
	}

	// The Harness polls and gets the pass.
	resp, err = n.Client().Get(a.StatusURL(st.ID))
	if err != nil {
		panic(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	fmt.Println("poll:", st.Status, st.AgentPass != nil)

	// The Service validates it (once).
	for range 2 {
		code, raw, err := svc.Post(n.Client(), a.Configuration().Endpoints.Validate, a.Identifier(),
			pass.ValidationRequest{AgentPass: pass.PassValue{Value: st.AgentPass.Value}})
		if err != nil {
			panic(err)
		}
		var v pass.ValidationResponse
		if code == http.StatusOK && json.Unmarshal(raw, &v) == nil {
			fmt.Println("validate:", code, v.User.Email, v.Agent.ID, v.Scope, time.Until(*v.AuthorizationExpiresAt) > 7*time.Hour)
		} else {
			fmt.Println("validate:", code)
		}
	}
	// Output:
	// notify approver: alex@corp.test wants my-agent on https://todo.test
	// issuance: 202 pending
	// poll: approved true
	// validate: 200 alex@corp.test my-agent [tickets:read] true
	// validate: 409
}
