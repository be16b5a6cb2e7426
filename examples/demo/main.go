// Command demo runs the whole AgentPass flow in one process and narrates
// it.
//
// # Overview
//
// It starts an Enterprise Authority, a Federated Authority, a Service
// Authority and a to-do Service on loopback (real TLS with a throwaway CA,
// a real DNS server, in-memory stores), and a Harness acting for users of
// each resolution branch. It exits non-zero if any step does not behave as
// the protocol says it must, so it doubles as an end-to-end check.
//
// # Usage
//
//	go run ./examples/demo      # -v also prints every party's audit log
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
)

func main() {
	verbose := flag.Bool("v", false, "also print every party's structured audit log to stderr")
	flag.Parse()
	if err := run(os.Stdout, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
}

// demo holds the running network and the narration state.
type demo struct {
	mu    sync.Mutex // the simulated approver narrates from its own goroutine
	out   io.Writer
	net   *testnet.Network
	sb    *sandbox.Sandbox
	agent *harness.Client
	cfg   harness.Config // the agent's, for the sub-agents of step 6
	steps int
	first *harness.Token // the token of step 1, revoked in step 4
}

func (d *demo) say(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demo) step(title string) {
	d.steps++
	d.say("\n%d. %s", d.steps, title)
}

func (d *demo) expect(ok bool, format string, args ...any) error {
	if !ok {
		return fmt.Errorf("step %d: "+format, append([]any{d.steps}, args...)...)
	}
	d.say("   ✓ "+format, args...)
	return nil
}

func run(out io.Writer, verbose bool) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	n, err := testnet.Start()
	if err != nil {
		return err
	}
	defer n.Close()
	d := &demo{out: out, net: n}

	logger := slog.New(slog.DiscardHandler)
	if verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	// The simulated approver: a person who, for requests the policy leaves
	// pending, approves reading and adding items but not deleting them.
	approve := func(a *authority.Authority, r authority.Request) {
		go func() {
			time.Sleep(300 * time.Millisecond)
			scope := pass.Scope{"todos:read", "todos:write"}
			dec := authority.Decision{Outcome: authority.Approve, Scope: scope, DecidedBy: "human:manager@corp.test"}
			d.say("   [person at %s] reviews %q and approves %v (not todos:delete)", a.Identifier(), r.TaskDescription, scope)
			if strings.Contains(r.TaskDescription, "sub-agents") {
				dec.MaxDepth = 1
				d.say("   [person] also lets it hand parts of the task to sub-agents, one generation deep")
			}
			if _, err := a.Decide(context.Background(), r.MissionID, dec); err != nil {
				d.say("   [person] decision failed: %v", err)
			}
		}()
	}
	// The Service checks each delegation every 30 s (the default), and its
	// Authorities push revocations to it at once (RFC 8935).
	sb, err := sandbox.Build(n, sandbox.Options{Logger: logger, OnPending: approve, EventDelivery: pass.DeliveryPush})
	if err != nil {
		return err
	}
	d.sb = sb
	for _, a := range sb.Authorities() {
		go func() { _ = a.RunEventTransmitter(ctx) }()
	}
	d.cfg = harness.Config{
		HarnessID:  "demo-agent",
		HTTPClient: n.Client(),
		// Every party of the demo listens on loopback.
		InsecureAllowPrivateNetworks: true,
		Discovery:                    n.Discovery(),
		Logger:                       logger,
		Progress:                     d.progress,
		ChooseAuthority: func(_ context.Context, options []pass.AuthorityRef) (pass.AuthorityRef, error) {
			d.say("   [operator] is offered %d federated Authorit%s and picks %s", len(options), plural(len(options)), options[0].Authority)
			return options[0], nil
		},
	}
	if d.agent, err = harness.New(d.cfg); err != nil {
		return err
	}

	// The Harness's background work (retrying a mission completion the
	// Authority missed) runs only where the application starts it.
	go func() { _ = d.agent.Run(ctx) }()

	d.say("AgentPass v%s demo: a Harness, a to-do Service and four Authorities on loopback", pass.Version)
	d.say("(TLS with a throwaway CA, a real DNS server on %s, in-memory stores)", n.DNS.Addr())

	steps := []func(context.Context) error{
		d.automaticApproval,
		d.humanApproval,
		d.browserSession,
		d.revocation,
		d.missionComplete,
		d.subAgents,
		d.federated,
		d.refusals,
	}
	for _, s := range steps {
		if err := s(ctx); err != nil {
			return err
		}
	}
	d.say("\nAll %d steps behaved as the protocol requires (%.1fs).", d.steps, time.Since(start).Seconds())
	return nil
}

func plural(n int) string {
	if n == 1 {
		return "y"
	}
	return "ies"
}

// progress narrates what the Harness reports.
func (d *demo) progress(p harness.Progress) {
	switch p.Event {
	case harness.EventServiceDiscovered:
		d.say("   discovered %s through DNS (_agentpass-service.%s)", p.Service, strings.TrimPrefix(p.Service, "https://"))
	case harness.EventAuthorityResolved:
		d.say("   the Service resolved the Authority for %s: branch %q", p.User, p.Branch)
	case harness.EventAuthorityChosen:
		d.say("   asking %s for an AgentPass", p.Authority)
	case harness.EventRequestCreated:
		d.say("   issuance request accepted (status %s)", p.Status)
	case harness.EventPending:
		if p.Elapsed > 0 {
			d.say("   … still pending after %s", p.Elapsed.Round(10*time.Millisecond))
		}
	case harness.EventApproved:
		d.say("   approved")
	case harness.EventDenied, harness.EventExpired, harness.EventCanceled:
		d.say("   %s: %s", p.Event, p.Reason)
	case harness.EventRedeemed:
		if len(p.Scope) > 0 {
			d.say("   redeemed at the Service; granted scope %v", p.Scope)
		} else {
			d.say("   redeemed at the Service")
		}
	}
}

func (d *demo) acquire(ctx context.Context, user, task string, typ pass.PassType) (*harness.Grant, error) {
	return d.agent.Acquire(ctx, harness.Request{
		Service: d.sb.TodoOrigin, User: user, Type: typ,
		Task: pass.Task{Description: task},
	})
}

func (d *demo) automaticApproval(ctx context.Context) error {
	d.step("Enterprise user, read-only task: approved automatically by policy")
	g, err := d.acquire(ctx, sandbox.UserEnterprise, "Summarise my to-do list", pass.BearerToken)
	if err != nil {
		return err
	}
	if err := d.expect(g.Branch == harness.BranchEnterprise, "the Enterprise Authority of corp.test governs %s", sandbox.UserEnterprise); err != nil {
		return err
	}
	tok, err := d.agent.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		return err
	}
	d.first = tok
	status, body, err := d.call(ctx, tok, http.MethodGet, "/api/todos", "")
	if err != nil {
		return err
	}
	return d.expect(status == 200 && strings.Contains(body, "passport"), "GET /api/todos with the token → %d, the user's items", status)
}

func (d *demo) humanApproval(ctx context.Context) error {
	d.step("Enterprise user, task that changes data: a person approves")
	g, err := d.acquire(ctx, sandbox.UserEnterprise, "Add 'Water the plants' to my list", pass.BearerToken)
	if err != nil {
		return err
	}
	tok, err := d.agent.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		return err
	}
	status, _, err := d.call(ctx, tok, http.MethodPost, "/api/todos", `{"title":"Water the plants"}`)
	if err != nil {
		return err
	}
	if err := d.expect(status == 201, "POST /api/todos → %d, item added", status); err != nil {
		return err
	}
	status, body, err := d.call(ctx, tok, http.MethodDelete, "/api/todos/1", "")
	if err != nil {
		return err
	}
	return d.expect(status == 403 && strings.Contains(body, "todos:delete"), "DELETE /api/todos/1 → %d: todos:delete was not granted", status)
}

func (d *demo) browserSession(ctx context.Context) error {
	d.step("Browser session: the agent's browser lands signed in, once")
	g, err := d.agent.Acquire(ctx, harness.Request{
		Service: d.sb.TodoOrigin, User: sandbox.UserEnterprise, Type: pass.BrowserSession,
		Task: pass.Task{Description: "Show my to-do list in the browser"}, Destination: d.sb.TodoOrigin + "/app",
	})
	if err != nil {
		return err
	}
	init, err := d.agent.RedeemBrowserSession(ctx, g, harness.RedeemOptions{})
	if err != nil {
		return err
	}
	req, err := init.Take()
	if err != nil {
		return err
	}
	d.say("   the Service answered with a one-time initialization: %s", req)
	// A minimal browser: a cookie jar and redirects, as Chromium would do
	// (harness/browser drives a real Chromium; the demo stays dependency-free).
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: d.net.Client().Transport, Jar: jar}
	load := func() (*http.Response, string, error) {
		var resp *http.Response
		var err error
		if req.Method == http.MethodPost {
			form := url.Values{}
			for k, v := range req.FormFields {
				form.Set(k, v)
			}
			resp, err = browser.PostForm(req.URL, form)
		} else {
			resp, err = browser.Get(req.URL)
		}
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return resp, string(b), nil
	}
	resp, page, err := load()
	if err != nil {
		return err
	}
	if err := d.expect(resp.StatusCode == 200 && resp.Request.URL.Path == "/app" && strings.Contains(page, sandbox.UserEnterprise) && strings.Contains(page, "demo-agent"),
		"the browser followed the redirect to %s and the page says: signed in as %s, acting agent demo-agent", resp.Request.URL.Path, sandbox.UserEnterprise); err != nil {
		return err
	}
	jar2, _ := cookiejar.New(nil)
	browser.Jar = jar2
	resp, _, err = load()
	if err != nil {
		return err
	}
	return d.expect(resp.StatusCode == http.StatusGone, "loading the same initialization again → %d: it works once", resp.StatusCode)
}

func (d *demo) revocation(ctx context.Context) error {
	d.step("Revocation: the Authority withdraws the first delegation and the Service stops the agent")
	auths, err := d.sb.Enterprise.Authorizations(ctx, authority.ListOptions{User: sandbox.UserEnterprise})
	if err != nil {
		return err
	}
	var target *authority.Authorization
	for _, a := range auths {
		if a.TaskDescription == "Summarise my to-do list" {
			target = a
		}
	}
	if target == nil {
		return fmt.Errorf("step %d: the first delegation is not listed at the Authority", d.steps)
	}
	if _, err := d.sb.Enterprise.Revoke(ctx, target.ID, "human:security@corp.test", "demo"); err != nil {
		return err
	}
	d.say("   the Enterprise Authority revoked authorization %s… and pushed the event to the Service", target.ID[:12])
	status, body, after, err := d.refused(ctx, d.first)
	if err != nil {
		return err
	}
	return d.expect(status == 401 && strings.Contains(body, string(pass.CodeDelegationRevoked)),
		"GET /api/todos with that token → %d %s within %d ms, no 30 s check needed", status, pass.CodeDelegationRevoked, after.Milliseconds())
}

// refused calls GET /api/todos with tok until the Service refuses it (the
// pushed event is applied within milliseconds), for at most 5 s, and
// returns the refusal and how long it took.
func (d *demo) refused(ctx context.Context, tok *harness.Token) (int, string, time.Duration, error) {
	start := time.Now()
	for {
		status, body, err := d.call(ctx, tok, http.MethodGet, "/api/todos", "")
		if err != nil || status != http.StatusOK || time.Since(start) > 5*time.Second {
			return status, body, time.Since(start), err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (d *demo) missionComplete(ctx context.Context) error {
	d.step("Mission complete: the agent finishes its task and ends its delegation, so its token cannot outlive the work")
	g, err := d.acquire(ctx, sandbox.UserEnterprise, "Count the items on my list", pass.BearerToken)
	if err != nil {
		return err
	}
	tok, err := d.agent.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		return err
	}
	status, _, err := d.call(ctx, tok, http.MethodGet, "/api/todos", "")
	if err != nil {
		return err
	}
	if err := d.expect(status == 200, "GET /api/todos → %d: the agent does its task", status); err != nil {
		return err
	}
	m, err := d.agent.Mission(g)
	if err != nil {
		return err
	}
	rec, err := m.Complete(ctx, pass.OutcomeSucceeded, "counted the items")
	if err != nil {
		return err
	}
	if err := d.expect(rec.State == pass.MissionCompleted, "the Harness completed mission %s… (version %d, %d history entries)", m.ID()[:12], rec.Version, rec.History.Count); err != nil {
		return err
	}
	_, _, err = d.call(ctx, tok, http.MethodGet, "/api/todos", "")
	if err := d.expect(errors.Is(err, harness.ErrMissionClosed), "the next GET /api/todos with its token is refused by the Harness itself: %v", err); err != nil {
		return err
	}
	// The same token sent by anything else is refused by the Service once
	// it re-checks the delegation with the Authority.
	raw, err := harness.NewToken(tok.Service, tok.Value(), tok.Type, nil, nil)
	if err != nil {
		return err
	}
	status, _, after, err := d.refused(ctx, raw)
	if err != nil {
		return err
	}
	return d.expect(status == 401, "the same token sent around the Harness → %d within %d ms (the completion was pushed to the Service)", status, after.Milliseconds())
}

// subAgents: an orchestrator delegates narrower parts of its task to two
// sub-agents, each holding its own key; revoking the orchestrator revokes
// them with it.
func (d *demo) subAgents(ctx context.Context) error {
	d.step("Sub-agents: an orchestrator hands narrower tasks to two sub-agents; revoking it revokes them")
	g, err := d.acquire(ctx, sandbox.UserEnterprise, "Plan my week: update my list with two sub-agents", pass.BearerToken)
	if err != nil {
		return err
	}
	own, err := d.agent.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		return err
	}
	m, err := d.agent.Mission(g)
	if err != nil {
		return err
	}
	spawn := func(suffix, task string, scope pass.Scope) (*harness.Token, *harness.Grant, error) {
		offer, err := m.Offer(suffix, pass.Task{ID: "week." + suffix, Description: task})
		if err != nil {
			return nil, nil, err
		}
		// The sub-agent makes its own key and proves it; the key never
		// leaves it, so the pass the orchestrator obtains is useless to
		// anyone else.
		key, err := dpop.GenerateKey("ES256")
		if err != nil {
			return nil, nil, err
		}
		proofs, err := harness.ProveChild(key, offer, "", time.Now())
		if err != nil {
			return nil, nil, err
		}
		child, err := m.Delegate(ctx, harness.Child{Offer: offer, Proofs: proofs, Scope: scope})
		if err != nil {
			return nil, nil, err
		}
		child.Key = key
		cfg := d.cfg
		cfg.HarnessID, cfg.Progress = child.HarnessID, nil
		sub, err := harness.New(cfg)
		if err != nil {
			return nil, nil, err
		}
		tok, err := sub.RedeemBearerToken(ctx, child, harness.RedeemOptions{})
		if err != nil {
			return nil, nil, err
		}
		d.say("   %s holds its own pass for %v: one round trip, no person asked", child.HarnessID, tok.Scope)
		return tok, child, nil
	}
	reader, rg, err := spawn("reader", "Read my list", pass.Scope{"todos:read"})
	if err != nil {
		return err
	}
	writer, _, err := spawn("writer", "Add this week's chores", pass.Scope{"todos:write"})
	if err != nil {
		return err
	}
	status, _, err := d.call(ctx, reader, http.MethodGet, "/api/todos", "")
	if err != nil {
		return err
	}
	if err := d.expect(status == 200, "the reader: GET /api/todos → %d", status); err != nil {
		return err
	}
	status, _, err = d.call(ctx, reader, http.MethodPost, "/api/todos", `{"title":"Sneak in"}`)
	if err != nil {
		return err
	}
	if err := d.expect(status == 403, "the reader: POST /api/todos → %d: its scope is narrower than the orchestrator's", status); err != nil {
		return err
	}
	status, _, err = d.call(ctx, writer, http.MethodPost, "/api/todos", `{"title":"Take out the bins"}`)
	if err != nil {
		return err
	}
	if err := d.expect(status == 201, "the writer: POST /api/todos → %d", status); err != nil {
		return err
	}
	_, _, err = spawn("cleaner", "Delete old items", pass.Scope{"todos:delete"})
	if err := d.expect(errors.Is(err, pass.ErrScope), "a sub-agent asking for todos:delete, which the orchestrator lacks, is refused (%v)", codeOf(err)); err != nil {
		return err
	}

	if _, err := d.sb.Enterprise.Revoke(ctx, g.MissionID, "human:security@corp.test", "demo"); err != nil {
		return err
	}
	d.say("   the Enterprise Authority revoked the orchestrator's mission %s…", g.MissionID[:12])
	rec, err := d.sb.Enterprise.Mission(ctx, rg.MissionID)
	if err != nil {
		return err
	}
	if err := d.expect(rec.State == pass.MissionRevoked && rec.Ended != nil && rec.Ended.Cause == pass.CauseCascade,
		"the Authority ended the sub-agents' missions with it (the reader's: %s, cause %s)", rec.State, causeOf(rec.Ended)); err != nil {
		return err
	}
	time.Sleep(1100 * time.Millisecond) // the Service re-checks every second in this demo
	for _, c := range []struct {
		who string
		tok *harness.Token
	}{{"orchestrator", own}, {"reader", reader}, {"writer", writer}} {
		status, _, err := d.call(ctx, c.tok, http.MethodGet, "/api/todos", "")
		if err != nil {
			return err
		}
		if err := d.expect(status == 401, "the %s's next call → %d", c.who, status); err != nil {
			return err
		}
	}
	return nil
}

func causeOf(e *pass.MissionEnd) string {
	if e == nil {
		return "none"
	}
	return e.Cause
}

func (d *demo) federated(ctx context.Context) error {
	d.step("User without an Enterprise Authority: a trusted Federated Authority")
	g, err := d.acquire(ctx, sandbox.UserNoRecord, "Summarise my to-do list", pass.BearerToken)
	if err != nil {
		return err
	}
	if err := d.expect(g.Branch == harness.BranchFederated && g.Authority == d.sb.Federated.Identifier(), "no _agentpass record for gmail.test, so the Service offered its federated list"); err != nil {
		return err
	}
	tok, err := d.agent.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		return err
	}
	status, _, err := d.call(ctx, tok, http.MethodGet, "/api/todos", "")
	if err != nil {
		return err
	}
	return d.expect(status == 200, "GET /api/todos → %d", status)
}

func (d *demo) refusals(ctx context.Context) error {
	d.step("Domains that refuse: \"none\", and a broken Enterprise configuration")
	_, err := d.acquire(ctx, sandbox.UserNone, "Summarise my to-do list", pass.BearerToken)
	var pe *pass.PeerError
	if err := d.expect(errors.As(err, &pe) && pe.Code == pass.CodeDelegationDisabled, "%s: the Service refuses (%v); no federated fallback", sandbox.UserNone, codeOf(err)); err != nil {
		return err
	}
	_, err = d.acquire(ctx, sandbox.UserBroken, "Summarise my to-do list", pass.BearerToken)
	return d.expect(errors.As(err, &pe) && pe.Status == http.StatusBadGateway, "%s: the enterprise configuration is invalid, so the Service refuses (%v) instead of falling back", sandbox.UserBroken, codeOf(err))
}

func codeOf(err error) string {
	var pe *pass.PeerError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%d %s", pe.Status, pe.Code)
	}
	return fmt.Sprint(err)
}

// call makes an API call to the to-do Service with the token.
func (d *demo) call(ctx context.Context, tok *harness.Token, method, path, body string) (int, string, error) {
	client := tok.HTTPClient(d.net.Client())
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.sb.TodoOrigin+path, rd)
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b), nil
}
