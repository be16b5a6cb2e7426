package authority_test

import (
	"context"
	"fmt"

	"github.com/agentpass-go/agentpass/authority"
)

// A templates file maps kinds of tasks to the scopes they need; a model can
// be asked when no template matches. Either way only scopes the Service
// offers come out, each with its reason.
func ExampleFirstOf() {
	templates, err := authority.ParseTemplates([]byte(`{
	  "version": "2026-11-01",
	  "templates": [{
	    "id": "ticket-summary", "version": "1",
	    "regexp": "(?i)\\btickets?\\b", "any": ["summarize", "report"],
	    "scopes": [{"name": "tickets:read", "why": "a summary only reads tickets"}]
	  }]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	model, err := authority.NewModelCompiler(authority.ModelConfig{
		Version: "demo-1",
		Model: func(ctx context.Context, prompt string) (string, error) {
			// A real model behind any API goes here; this one was talked into
			// asking for everything.
			return `{"scopes": [{"name": "*"}, {"name": "tickets:comment", "why": "to answer"}]}`, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	compiler := authority.FirstOf(templates, model)
	offered := []authority.AvailableScope{{Name: "tickets:read"}, {Name: "tickets:comment"}, {Name: "tickets:delete"}}

	for _, task := range []string{"Summarize this week's tickets.", "Answer Bob."} {
		p, err := compiler.Compile(context.Background(), authority.CompileInput{
			Service: "https://tickets.example", Task: task, Available: offered,
		})
		if err != nil {
			fmt.Println(err)
			continue
		}
		for _, r := range p.Scopes {
			fmt.Printf("%s: %s (%s %s, untrusted %v)\n", task, r.Scope, r.Basis, r.Source, r.Untrusted())
		}
		for _, r := range p.Excluded {
			fmt.Printf("%s: excluded %s: %s\n", task, r.Scope, r.Why)
		}
	}
	// Output:
	// Summarize this week's tickets.: tickets:read (template ticket-summary@1, untrusted false)
	// Answer Bob.: tickets:comment (model , untrusted true)
	// Answer Bob.: excluded *: the wildcard is never proposed
}
