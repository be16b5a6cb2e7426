package harness_test

import (
	"context"
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

// A staged tool-calling loop. The agent asks for a plan: read first, write
// later. Before each tool runs, Gate says whether the current stage allows
// it; when a later stage would, the agent asks for that stage (here the
// Authority's policy decides at once; a human gate would make RequestStage
// wait for the person) instead of looking for another way in.
func ExampleMission_Gate() {
	n, cfg := network(e2e.Options{Authority: func(c *authority.Config) {
		c.Effects = authority.EffectRules{":read": authority.EffectRead, ":write": authority.EffectWrite}
	}})
	defer n.Close()
	ctx := context.Background()
	c, err := harness.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	g, err := c.Acquire(ctx, harness.Request{
		Service: "https://app.test",
		User:    "alex@corp.test",
		Task:    pass.Task{Description: "Find duplicate tickets and file a summary"},
		Stages: []pass.Stage{
			{Name: "discover", Scope: pass.Scope{"tickets:read"}},
			{Name: "report", Scope: pass.Scope{"tickets:read", "tickets:write"}, Gate: pass.GatePolicy},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	m, err := c.Mission(g)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := m.Refresh(ctx); err != nil { // Gate answers from the mission as read
		log.Fatal(err)
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		log.Fatal(err)
	}
	api := tok.HTTPClient(n.Client)

	type tool struct{ name, method, scope string }
	for _, t := range []tool{
		{"list_tickets", http.MethodGet, "tickets:read"},
		{"file_summary", http.MethodPost, "tickets:write"},
		{"delete_ticket", http.MethodDelete, "tickets:delete"},
	} {
		var next *harness.ErrNeedsTransition
		switch err := m.Gate(t.scope); {
		case errors.As(err, &next):
			rec, err := m.RequestStage(ctx, next.Stage, t.name+" needs "+t.scope)
			if err != nil {
				fmt.Println(t.name+": stage refused:", err)
				continue
			}
			fmt.Println(t.name+": moved to stage", rec.AuthorityModel.Stage)
			// The Service learns the new stage at its next authorization
			// check; the example's clock moves there.
			n.Clock.Advance((30 * time.Second) + time.Second)
		case errors.Is(err, harness.ErrOutsideMission):
			fmt.Println(t.name + ": outside the mission, not run")
			continue
		case err != nil:
			log.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx, t.method, "https://app.test/api/tickets", strings.NewReader("{}"))
		resp, err := api.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(t.name+":", resp.StatusCode)
	}
	// Output:
	// list_tickets: 200
	// file_summary: moved to stage report
	// file_summary: 200
	// delete_ticket: outside the mission, not run
}
