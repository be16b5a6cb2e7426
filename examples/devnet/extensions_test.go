package main

import (
	"context"
	"io"
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// appliedStore tells the test every event the to-do Service applied, so it
// waits for a push instead of sleeping.
type appliedStore struct {
	service.Store
	applied chan service.MissionEvent
}

func (s *appliedStore) ApplyEvent(ctx context.Context, e service.MissionEvent) (bool, error) {
	ok, err := s.Store.ApplyEvent(ctx, e)
	if ok && err == nil {
		select {
		case s.applied <- e:
		default:
		}
	}
	return ok, err
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Item 7 of issue #23: one flow through every extension at once on the
// devnet. The compiler's template proposes the scopes and a two-stage
// plan (compilation); a person approves with sub-agents allowed; the
// Harness reads its mission (mission record) and works in the first
// stage, where writing is refused; it asks for the next stage, a person
// lets it move, and the stage change is pushed to the Service, which lets
// the write through after one confirming check (stages, events); it hands
// a read-only sub-agent its own delegation (delegation); a revocation of
// the orchestrator is pushed and refuses both at once, with no clock
// advanced past the Service's check interval (events).
func TestDevnetAllExtensions(t *testing.T) {
	clock := &testClock{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	applied := make(chan service.MissionEvent, 64)
	cfg0 := config{dir: t.TempDir(), dnsAddr: "127.0.0.1:0", adminToken: "tok-1234", now: clock.Now,
		wrapServiceStore: func(s service.Store) service.Store { return &appliedStore{Store: s, applied: applied} }}
	d, err := start(ctx, cfg0, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	admin := d.manifest.Authorities[0].AdminAPI
	api := func(method, u, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok-1234")
		resp, err := d.net.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitEvent := func(what string, match func(service.MissionEvent) bool) {
		t.Helper()
		for {
			select {
			case ev := <-applied:
				if match(ev) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("%s: no event reached the Service", what)
			}
		}
	}
	call := func(tok *harness.Token, method string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, d.sb.TodoOrigin+"/api/todos", strings.NewReader(`{"title":"buy milk"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := tok.HTTPClient(d.net.Client()).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	pending, stagePending := make(chan string, 4), make(chan struct{}, 1)
	cfg := harness.Config{
		// The Authority's 202 to the stage move says a person must decide.
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := rt.RoundTrip(r)
				if err == nil && resp.StatusCode == http.StatusAccepted && strings.HasSuffix(r.URL.Path, "/missions/stage") {
					select {
					case stagePending <- struct{}{}:
					default:
					}
				}
				return resp, err
			})
		}, HarnessID: "devnet-all", HTTPClient: d.net.Client(), Discovery: d.net.Discovery(),
		InsecureAllowPrivateNetworks: true, Now: clock.Now, MinPoll: 100 * time.Millisecond,
		Progress: func(p harness.Progress) {
			if p.Event == harness.EventRequestCreated && p.ApprovalURL != "" {
				pending <- path.Base(p.ApprovalURL)
			}
		}}
	c, err := harness.New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// Compilation: the template proposes both scopes with a plan; the
	// request waits for a person, who allows one level of sub-agents.
	type acquired struct {
		g   *harness.Grant
		err error
	}
	done := make(chan acquired, 1)
	go func() {
		g, err := c.Acquire(ctx, harness.Request{Service: d.sb.TodoOrigin, User: sandbox.UserEnterprise,
			Scope: pass.Scope{"todos:read", "todos:write"},
			Task:  pass.Task{Description: "Review my todos, then add the missing ones"}})
		done <- acquired{g, err}
	}()
	var missionID string
	select {
	case missionID = <-pending:
	case <-ctx.Done():
		t.Fatal("no issuance request")
	}
	if status, body := api("POST", admin+"decide", `{"id":"`+missionID+`","outcome":"approve","scope":["todos:read","todos:write"],"max_depth":1}`); status != 200 {
		t.Fatalf("admin API decide = %d %s", status, body)
	}
	a := <-done
	if a.err != nil {
		t.Fatal(a.err)
	}
	g := a.g

	// Mission record and stages: the scopes and the plan came from the
	// template.
	m, err := c.Mission(g)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := m.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b := rec.ScopeBasis; b == nil || b.Compiler == nil || b.Compiler.ID != "templates" || len(b.Rationale) != 2 || b.Rationale[0].Basis != "template" {
		t.Errorf("scope basis %+v: want both scopes from the devnet template", b)
	}
	if am := rec.AuthorityModel; am.Stage != "review" || len(am.Stages) != 2 {
		t.Fatalf("authority model: stage %q, %d stages; want review of 2", am.Stage, len(am.Stages))
	}
	tok, err := c.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st, body := call(tok, http.MethodGet); st != http.StatusOK {
		t.Fatalf("read in review = %d %s", st, body)
	}
	if st, body := call(tok, http.MethodPost); st != http.StatusForbidden || !strings.Contains(body, string(pass.CodeStageScopeExceeded)) {
		t.Fatalf("write in review = %d %s, want 403 %s", st, body, pass.CodeStageScopeExceeded)
	}

	// The move to update waits for a person (writing raises the gate);
	// once decided, the change is pushed and the write goes through.
	moved := make(chan error, 1)
	go func() {
		_, err := m.RequestStage(ctx, "update", "the review is done")
		moved <- err
	}()
	select {
	case <-stagePending:
	case err := <-moved:
		t.Fatalf("RequestStage returned before the decision: %v", err)
	}
	if status, body := api("POST", admin+"decide-stage", `{"id":"`+g.MissionID+`","outcome":"approve"}`); status != 200 {
		t.Fatalf("admin API decide-stage = %d %s", status, body)
	}
	if err := <-moved; err != nil {
		t.Fatalf("RequestStage(update): %v", err)
	}
	waitEvent("stage change", func(ev service.MissionEvent) bool { return ev.Stage == "update" })
	if st, body := call(tok, http.MethodPost); st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("write in update = %d %s", st, body)
	}

	// Delegation: a read-only sub-agent with its own key.
	offer, err := m.Offer("reader", pass.Task{ID: "review.reader", Description: "Read the list for the review"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	proofs, err := harness.ProveChild(key, offer, "", clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	cg, err := m.Delegate(ctx, harness.Child{Offer: offer, Proofs: proofs, Scope: pass.Scope{"todos:read"}})
	if err != nil {
		t.Fatalf("Delegate: %v", err)
	}
	cg.Key = key
	subCfg := cfg
	subCfg.HarnessID, subCfg.Progress = cg.HarnessID, nil
	sub, err := harness.New(subCfg)
	if err != nil {
		t.Fatal(err)
	}
	subTok, err := sub.RedeemBearerToken(ctx, cg, harness.RedeemOptions{})
	if err != nil {
		t.Fatalf("sub-agent redeem: %v", err)
	}
	if st, body := call(subTok, http.MethodGet); st != http.StatusOK {
		t.Fatalf("sub-agent read = %d %s", st, body)
	}

	// Events: revoking the orchestrator is pushed; both are refused with
	// the clock where it was (no check interval has passed).
	auths, err := d.sb.Enterprise.Authorizations(ctx, authority.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rootID string
	for _, az := range auths {
		if az.MissionID == g.MissionID {
			rootID = az.ID
		}
	}
	if status, body := api("POST", admin+"revoke", `{"id":"`+rootID+`","reason":"done"}`); status != 200 {
		t.Fatalf("admin API revoke = %d %s", status, body)
	}
	waitEvent("revocation", func(ev service.MissionEvent) bool {
		return ev.AuthorizationID == rootID && (ev.Action == service.EventEnd || ev.Action == service.EventRevoke)
	})
	for name, tk := range map[string]*harness.Token{"orchestrator": tok, "sub-agent": subTok} {
		if st, _ := call(tk, http.MethodGet); st != http.StatusUnauthorized {
			t.Errorf("%s after the pushed revocation = %d, want 401", name, st)
		}
	}
}
