// Package conformance checks whether an AgentPass Service or Authority
// conforms to the v0.1 specification and is hardened, by acting as the other
// parties: an independent Harness with its own holder keys and proofs, and,
// toward an Authority, a Service signing its own assertions.
//
// # Overview
//
// Run discovers the targets, runs every check that applies to them, and
// returns a Report: one Result per check, grouped by role and named by the
// requirement ID of the project's checklist, each saying what the kit
// sent, what it expected (the spec's rule, or this SDK's documented choice)
// and what came back. Passes, tokens and initialization URLs never appear in
// a report; JWTs appear by their header only.
//
// The kit imports only pass, dpop, discovery and the module's internal
// machinery, never the harness, service or authority packages, so it judges
// this SDK's own parties as it judges anyone's.
//
// # Usage
//
//	kit, err := conformance.NewKitService("https://kit.example.com")
//	// serve kit at that origin and publish
//	// _agentpass-service.kit.example.com = kit.ConfigurationURL(origin)
//	rep, err := conformance.Run(ctx, conformance.Config{
//		ServiceOrigin: "https://api.example.com", User: "tester@corp.example",
//		Approver: myApprover, KitService: kit,
//	})
//	rep.WriteText(os.Stdout)
//	if rep.Failed() { ... }
//
// The command `agentpass conformance` in examples/agentpass wraps it, with
// approvals through the devnet's admin API or a person at a prompt.
//
// # Levels
//
// A Required check is a rule of v0.1: its failure fails the run. A
// Recommended check is a SHOULD, a status code the spec only suggests, or
// a recommendation of the gap notes: its failure is a warning. A Choice
// check is this SDK's behaviour beyond v0.1 and runs only where the target
// advertises the extension that promises it, so a plain v0.1
// implementation is never failed for lacking an extension. The checks of
// the mission layer (ext:mission, ext:compile, ext:stages,
// ext:delegation, ext:events) are all of this level; the delegation
// checks need an approval that grants delegation rights, and the
// Service's stage check needs Config.ServiceAPI and a Service granting at
// least two scopes.
//
// # What it costs the target
//
// Most checks need a fresh pass, which the kit requests with a read-only
// task description so that policies approving reads at once need no person;
// otherwise Config.Approver decides. A full run makes a few dozen issuance
// requests and retries 429 answers after their Retry-After.
package conformance
