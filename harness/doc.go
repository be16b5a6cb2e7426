// Package harness is the agent side of AgentPass v0.1: it acquires an
// AgentPass for a task, redeems it at the Service for a bearer token or a
// browser session, and calls the Service's API with the token.
//
// # Overview
//
// An agent runtime (a "Harness") that needs to act for a User at a Service
// does not get the User's password or a long-lived API key. It asks for a
// short-lived, single-use AgentPass scoped to one task:
//
//  1. Discover the Service: DNS TXT _agentpass-service.{host}, then its
//     configuration document (§3.2.1).
//  2. Ask the Service which Authority may delegate for the User
//     (resolve_authorities, §3.2.2). The answer is the User's Enterprise
//     Authority, the Service's own Authority, or a list of trusted federated
//     Authorities to choose from (possibly together with the Service
//     Authority). A choice is never made silently: Config.ChooseAuthority
//     asks someone, or a preferred Authority that is on offer is used, or
//     Acquire fails with a *ChoiceRequiredError listing the options.
//  3. Fetch the Authority's configuration (its version is checked first)
//     and send the issuance request: service, user, harness id, task, the
//     public half of a fresh holder-binding key (harness.cnf) and a task
//     attestation signed with it.
//  4. Poll the request until someone (or a policy) approves or denies it,
//     honouring poll_after_ms and backing off otherwise. Config.Progress
//     reports each step, including the approval page to show the User.
//  5. Redeem the approved pass at the Service with a fresh holder proof: a
//     bearer token for API calls, or an initialization for a browser
//     (package harness/browser drives Chromium).
//
// Every terminal outcome is a typed error: [*DeniedError] (ErrDenied),
// ErrExpired, ErrCanceled, [*RedemptionError] (a 4xx from the Service; the
// pass is spent, acquire a new one), [*ProtocolError] for a peer that
// breaks the protocol, and [*APIError] from [CheckResponse] when the API
// refuses the token.
//
// This package implements AgentPass version 0.1 (pass.Version) and accepts
// any 0.x configuration; another major version aborts before any request
// is sent to that peer.
//
// # Usage
//
// Create one Client per Harness identity and reuse it:
//
//	c, err := harness.New(harness.Config{
//		HarnessID: "acme-build-bot",
//		ChooseAuthority: func(ctx context.Context, opts []pass.AuthorityRef) (pass.AuthorityRef, error) {
//			return askTheOperator(opts) // a federated provider is the person's choice
//		},
//		Progress: func(p harness.Progress) {
//			if p.Event == harness.EventRequestCreated && p.ApprovalURL != "" {
//				fmt.Println("approve at", p.ApprovalURL)
//			}
//		},
//	})
//
// Acquire a pass for one task and redeem it for a bearer token:
//
//	g, err := c.Acquire(ctx, harness.Request{
//		Service: "https://todo.example",
//		User:    "alex@corp.example",
//		Task:    harness.Task{Description: "Close the tickets fixed by release 1.4"},
//	})
//	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{RequestedScope: pass.Scope{"tickets:write"}})
//	api := tok.HTTPClient(nil) // adds Authorization; never sends the token to another origin
//	resp, err := api.Get("https://todo.example/api/tickets")
//	if err := harness.CheckResponse(resp); errors.Is(err, harness.ErrTokenRejected) {
//		// the delegation ended: acquire a new pass, explicitly
//	}
//
// For a browser session, set Request.Type to pass.BrowserSession (and
// Request.Destination), call RedeemBrowserSession, and hand the
// Initialization to browser.Open, which loads it exactly once.
//
// A grant, like the pass in it, is single-use: the first redemption spends
// it, whatever the outcome. After any terminal failure, call Acquire again
// (with a new task id if the task changed).
//
// When the Authority speaks the mission extension, end the delegation as
// soon as the task is done, so its token does not outlive the work:
//
//	go func() { _ = c.Run(ctx) }() // retries completions the Authority missed
//	m, err := c.Mission(g)
//	rec, err := m.Complete(ctx, pass.OutcomeSucceeded, "release 1.4 tickets closed")
//
// From then on the grant's tokens are refused locally (ErrMissionClosed),
// even if the Authority could not be told yet. Cancelling an Acquire while
// its request is pending abandons the request at the Authority.
package harness
