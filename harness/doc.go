// Package harness is the agent side of AgentPass v0.1: it acquires an
// AgentPass for a task, redeems it at the Service for a bearer token or a
// browser session, and calls the Service's API with the token.
//
// # Overview
//
// An agent runtime (a "Harness") that acts for a User at a Service gets
// neither the User's password nor a long-lived API key: it asks an
// Authority for a short-lived, single-use AgentPass scoped to one task and
// bound to a key only the Harness holds, then redeems it at the Service. A
// [Client] runs that exchange; a [TokenSource] hands the resulting token to
// an agent's tool calls, sharing one request between them.
//
// # Usage
//
//	c, err := harness.New(harness.Config{HarnessID: "acme-build-bot"})
//	g, err := c.Acquire(ctx, harness.Request{
//		Service: "https://todo.example",
//		User:    "alex@corp.example",
//		Task:    pass.Task{Description: "Close the tickets fixed by release 1.4"},
//	})
//	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{RequestedScope: pass.Scope{"tickets:write"}})
//	resp, err := tok.HTTPClient(nil).Get("https://todo.example/api/tickets")
//	err = harness.CheckResponse(resp) // a 401 or 403 as an *APIError
//
// An agent whose tool calls each need the token, with deadlines shorter
// than a person's approval, uses a TokenSource:
//
//	ts := c.TokenSource(req, harness.TokenSourceOptions{})
//	defer ts.Close() // abandons a request still pending
//	api := &http.Client{Transport: ts.Transport(nil)}
//
// A program that may stop while a person decides splits Acquire in two,
// persisting the Pending (and keeping holder keys in a FileKeyStore):
//
//	p, err := c.Start(ctx, req) // show p.ApprovalURL; save p as JSON, mode 0600
//	g, err := c.Wait(ctx, p)    // after a restart too, with the same KeyStore
//
// Request.Scope asks for a scope. An Authority that compiles tasks into
// scopes answers with its proposal (Pending.Proposal, Grant.Proposal,
// EventProposal): which of the requested scopes it thinks the task needs,
// why, and which it does not. It never says anything about scopes the
// request did not name, so ask for what you need rather than for "*".
//
// # How a pass is acquired
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
//     reports each change of state, including the approval page to show
//     the User while the request is pending.
//  5. Redeem the approved pass at the Service with a fresh holder proof: a
//     bearer token for API calls, or an initialization for a browser
//     (package harness/browser drives Chromium).
//
// This package implements AgentPass version 0.1 (pass.Version) and accepts
// any 0.x configuration; another major version aborts before any request
// is sent to that peer.
//
// # Errors
//
// Every terminal outcome is a typed error: [*DeniedError] (ErrDenied),
// ErrExpired, ErrCanceled, [*RedemptionError] (a 4xx from the Service; the
// pass is spent, acquire a new one), [*ProtocolError] for a peer that
// breaks the protocol, and [*APIError] from [CheckResponse] when the API
// refuses the token.
//
// A grant, like the pass in it, is single-use: the first redemption spends
// it, whatever the outcome. After any terminal failure, call Acquire again
// (with a new task id if the task changed).
//
// # Choosing an Authority and showing progress
//
//	c, err := harness.New(harness.Config{
//		HarnessID: "acme-build-bot",
//		ChooseAuthority: func(ctx context.Context, opts []pass.AuthorityRef) (pass.AuthorityRef, error) {
//			return askTheOperator(opts) // a federated provider is the person's choice
//		},
//		Progress: func(p harness.Progress) {
//			if p.Event == harness.EventPending && p.ApprovalURL != "" {
//				fmt.Println("approve at", p.ApprovalURL)
//			}
//		},
//	})
//
// For a browser session, set Request.Type to pass.BrowserSession (and
// Request.Destination), call RedeemBrowserSession, and hand the
// Initialization to browser.Open, which loads it exactly once.
//
// # Agents
//
// A TokenSource acquires in the background: a tool call whose deadline
// passes while a person decides fails with ErrPending, and the next call
// joins the same request rather than filing another, so the approver sees
// one request per task. A failed acquisition is reported and the next call
// tries again. A 401 delegation_revoked seen by its Transport ends the
// source: a revocation stops the work instead of asking again.
//
// # Missions
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
//
// A Request may carry a stage plan (Request.Stages): the mission then holds
// one stage's scope at a time. Before a tool runs, [Mission.Gate] says
// whether the current stage allows its scopes, or which stage would;
// [Mission.RequestStage] moves there, waiting while a person decides.
package harness
