package harness_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
)

// An orchestrator splits its task between two sub-agents, each with its
// own key and a narrower scope than its own; no person is asked, since a
// sub-agent can never hold more than its parent. The User then revokes one
// sub-agent: it is refused at its next call, while the other and the
// orchestrator go on working.
func ExampleMission_Delegate() {
	// The User's approval lets this mission delegate one generation deep.
	n, cfg := network(e2e.Options{Approver: authority.Rules(authority.Rule{Name: "triage", Outcome: authority.Approve, MaxDepth: 1})})
	defer n.Close()
	ctx := context.Background()

	orchestrator, err := harness.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	g, err := orchestrator.Acquire(ctx, harness.Request{
		Service: "https://app.test",
		User:    "alex@corp.test",
		Task:    pass.Task{ID: "task-7", Description: "Triage the support queue"},
	})
	if err != nil {
		log.Fatal(err)
	}
	m, err := orchestrator.Mission(g)
	if err != nil {
		log.Fatal(err)
	}

	// spawn hands a sub-task to a new sub-agent and returns the sub-agent's
	// token and mission id.
	spawn := func(suffix, what string, scope pass.Scope) (*harness.Token, string) {
		offer, err := m.Offer(suffix, pass.Task{ID: "task-7." + suffix, Description: what})
		if err != nil {
			log.Fatal(err)
		}
		// In the sub-agent: a key of its own, which never leaves it.
		key, err := dpop.GenerateKey("ES256")
		if err != nil {
			log.Fatal(err)
		}
		proofs, err := harness.ProveChild(key, offer, "", time.Now())
		if err != nil {
			log.Fatal(err)
		}
		// In the orchestrator: one round trip to the Authority.
		child, err := m.Delegate(ctx, harness.Child{Offer: offer, Proofs: proofs, Scope: scope})
		if err != nil {
			log.Fatal(err)
		}
		// Back in the sub-agent: its own Client redeems with its key.
		child.Key = key
		subCfg := cfg
		subCfg.HarnessID = child.HarnessID
		sub, err := harness.New(subCfg)
		if err != nil {
			log.Fatal(err)
		}
		tok, err := sub.RedeemBearerToken(ctx, child, harness.RedeemOptions{})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(child.HarnessID, "got", tok)
		return tok, child.MissionID
	}
	// The orchestrator works with its own token too.
	own, err := orchestrator.RedeemBearerToken(ctx, g, harness.RedeemOptions{RequestedScope: pass.Scope{"tickets:read"}})
	if err != nil {
		log.Fatal(err)
	}
	reader, _ := spawn("reader", "Read the new tickets", pass.Scope{"tickets:read"})
	writer, writerMission := spawn("writer", "File duplicates", pass.Scope{"tickets:write"})

	call := func(who string, tok *harness.Token, method string) {
		req, _ := http.NewRequestWithContext(ctx, method, "https://app.test/api/tickets", nil)
		resp, err := tok.HTTPClient(n.Client).Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		switch err := harness.CheckResponse(resp); {
		case errors.Is(err, pass.ErrRevoked):
			fmt.Println(who + ": revoked")
		case err != nil:
			fmt.Println(who+":", err)
		default:
			body, _ := io.ReadAll(resp.Body)
			fmt.Println(who+":", strings.TrimSpace(string(body)))
		}
	}
	call("reader", reader, http.MethodGet)
	call("writer", writer, http.MethodPost)

	// The User revokes the writer (on the Authority's approval page); the
	// Service learns it at its next authorization check.
	if _, err := n.Enterprise.Revoke(ctx, writerMission, "alex@corp.test", "not needed"); err != nil {
		log.Fatal(err)
	}
	n.Clock.Advance((30 * time.Second) + time.Second)
	call("writer", writer, http.MethodPost)
	call("reader", reader, http.MethodGet)
	call("orchestrator", own, http.MethodGet)
	// Output:
	// acme-build-bot/reader got Token{Bearer for https://app.test, scope [tickets:read], value hidden}
	// acme-build-bot/writer got Token{Bearer for https://app.test, scope [tickets:write], value hidden}
	// reader: {"agent":"acme-build-bot/reader","chain":["acme-build-bot/reader","acme-build-bot"],"scope":["tickets:read"],"user":"alex@corp.test"}
	// writer: {"agent":"acme-build-bot/writer","chain":["acme-build-bot/writer","acme-build-bot"],"scope":["tickets:write"],"user":"alex@corp.test"}
	// writer: revoked
	// reader: {"agent":"acme-build-bot/reader","chain":["acme-build-bot/reader","acme-build-bot"],"scope":["tickets:read"],"user":"alex@corp.test"}
	// orchestrator: {"agent":"acme-build-bot","scope":["tickets:read"],"user":"alex@corp.test"}
}
