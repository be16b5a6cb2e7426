package harness

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
)

// gate makes the fake Authority leave a request pending until open is
// called: each status GET blocks until then (or until the client gives up).
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate() *gate  { return &gate{ch: make(chan struct{})} }
func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait(r *http.Request) bool {
	select {
	case <-g.ch:
		return true
	case <-r.Context().Done():
		return false
	}
}

// events collects progress events and signals each one on a channel.
type events struct {
	mu  sync.Mutex
	all []Progress
	ch  chan Event
}

func newEvents() *events { return &events{ch: make(chan Event, 64)} }

func (e *events) record(p Progress) {
	e.mu.Lock()
	e.all = append(e.all, p)
	e.mu.Unlock()
	e.ch <- p.Event
}

// waitFor blocks until event ev was reported.
func (e *events) waitFor(t *testing.T, ev Event) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case got := <-e.ch:
			if got == ev {
				return
			}
		case <-timeout.C:
			t.Fatalf("no %s event", ev)
		}
	}
}

func (e *events) kinds() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Event
	for _, p := range e.all {
		out = append(out, p.Event)
	}
	return out
}

// cancelled returns a context that is already done: a caller that will not
// wait at all.
func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// Issue #15: a transient failure is returned, and the next call tries
// again instead of failing for good with ErrTokenExpired.
func TestTokenSourceRetriesAfterFailure(t *testing.T) {
	f := newFake(t)
	n := 0
	def := f.issue
	f.issue = func(w http.ResponseWriter, id string, body []byte) {
		n++
		if n == 1 {
			writeErr(w, http.StatusServiceUnavailable, pass.CodeTemporarilyUnavailable)
			return
		}
		def(w, id, body)
	}
	c, _ := f.client(Config{})
	ts := c.TokenSource(bearerRequest(), TokenSourceOptions{})
	ctx := context.Background()
	if _, err := ts.Token(ctx); !errors.Is(err, ErrIssuance) || !errors.Is(err, pass.ErrUnavailable) {
		t.Fatalf("first Token: %v, want the issuance failure", err)
	}
	tok, err := ts.Token(ctx)
	if err != nil || tok.Value() != bearerTok {
		t.Fatalf("second Token: %v, %v; want a token", tok, err)
	}
	if got := len(f.callsTo(authSvc + "/issue")); got != 2 {
		t.Errorf("issuances = %d, want 2", got)
	}
}

// Issue #15: a caller's context bounds only its own wait; later callers
// join the pending request (one issuance, one task id), and Invalidate
// does not wait for the acquisition. Events report the pending state
// once, with the approval page, however many polls are made.
func TestTokenSourceDetachedAcquisition(t *testing.T) {
	f := newFake(t)
	g := newGate()
	f.issue = func(w http.ResponseWriter, _ string, _ []byte) {
		writeJSON(w, http.StatusAccepted, statusDoc(pass.StatusPending, map[string]any{
			"type": pass.BearerToken, "poll_after_ms": 100, "links": map[string]any{"approval": authSvc + "/approve/m1"}}))
	}
	f.status = func(w http.ResponseWriter, n int, r *http.Request) {
		if n < 3 {
			writeJSON(w, 200, statusDoc(pass.StatusPending, map[string]any{"type": pass.BearerToken}))
			return
		}
		if g.wait(r) {
			writeJSON(w, 200, approved(pass.BearerToken))
		}
	}
	ev := newEvents()
	c, _ := f.client(Config{Progress: ev.record})
	req := bearerRequest()
	req.Task.ID = ""
	ts := c.TokenSource(req, TokenSourceOptions{})
	if ts.TaskID() == "" {
		t.Fatal("no task id fixed")
	}

	for i := range 3 {
		_, err := ts.Token(cancelled())
		if !errors.Is(err, ErrPending) || !errors.Is(err, context.Canceled) {
			t.Fatalf("call %d: %v, want ErrPending", i, err)
		}
		if i == 0 {
			ev.waitFor(t, EventPending)
		}
	}
	done := make(chan struct{})
	go func() { ts.Invalidate(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Invalidate blocked behind the pending acquisition")
	}
	// A caller with a deadline gives up alone.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := ts.Token(ctx)
	cancel()
	if !errors.Is(err, ErrPending) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call with a deadline: %v, want ErrPending", err)
	}

	g.open()
	tok, err := ts.Token(context.Background())
	if err != nil || tok.Value() != bearerTok {
		t.Fatalf("Token after approval: %v, %v", tok, err)
	}
	if n := len(f.callsTo(authSvc + "/issue")); n != 1 {
		t.Errorf("issuances = %d, want 1", n)
	}
	if ir := f.issuanceBody(authSvc); ir.Task.ID != ts.TaskID() {
		t.Errorf("task id sent %q, source has %q", ir.Task.ID, ts.TaskID())
	}
	want := []Event{EventServiceDiscovered, EventAuthorityResolved, EventAuthorityChosen, EventRequestCreated, EventPending, EventApproved, EventRedeemed}
	if diff := cmp.Diff(want, ev.kinds()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, p := range ev.all {
		if p.Event == EventPending && p.ApprovalURL != authSvc+"/approve/m1" {
			t.Errorf("pending event approval URL = %q", p.ApprovalURL)
		}
	}
	if n := len(f.callsTo(authSvc + "/status/")); n < 3 {
		t.Errorf("status polls = %d, want at least 3 (events are fewer than polls)", n)
	}
}

// A failure nobody waited for goes to the next caller, so the agent learns
// of a denial instead of silently filing a new request; the call after
// that tries again.
func TestTokenSourceUnseenFailure(t *testing.T) {
	f := newFake(t)
	g := newGate()
	f.status = func(w http.ResponseWriter, n int, r *http.Request) {
		if n > 1 {
			writeJSON(w, 200, approved(pass.BearerToken))
			return
		}
		if g.wait(r) {
			writeJSON(w, 200, statusDoc(pass.StatusDenied, map[string]any{"type": pass.BearerToken, "reason": "not today"}))
		}
	}
	ev := newEvents()
	c, _ := f.client(Config{Progress: ev.record})
	ts := c.TokenSource(bearerRequest(), TokenSourceOptions{})
	if _, err := ts.Token(cancelled()); !errors.Is(err, ErrPending) {
		t.Fatalf("first call: %v, want ErrPending", err)
	}
	g.open()
	ev.waitFor(t, EventDenied)
	var d *DeniedError
	if _, err := ts.Token(context.Background()); !errors.As(err, &d) || d.Reason != "not today" {
		t.Fatalf("call after the denial: %v, want the DeniedError", err)
	}
	if _, err := ts.Token(context.Background()); err != nil {
		t.Fatalf("next call: %v, want a new acquisition", err)
	}
	if n := len(f.callsTo(authSvc + "/issue")); n != 2 {
		t.Errorf("issuances = %d, want 2", n)
	}
}

func TestTokenSourceClose(t *testing.T) {
	f := newFake(t)
	g := newGate()
	defer g.open()
	f.status = func(w http.ResponseWriter, _ int, r *http.Request) {
		if g.wait(r) {
			writeJSON(w, 200, approved(pass.BearerToken))
		}
	}
	ev := newEvents()
	c, _ := f.client(Config{Progress: ev.record})
	ts := c.TokenSource(bearerRequest(), TokenSourceOptions{})
	if _, err := ts.Token(cancelled()); !errors.Is(err, ErrPending) {
		t.Fatalf("Token: %v, want ErrPending", err)
	}
	ev.waitFor(t, EventPending)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Token(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Token after Close: %v, want ErrClosed", err)
	}
	if n := len(f.callsTo(authSvc + "/issue")); n != 1 {
		t.Errorf("issuances = %d, want 1", n)
	}
}

// The opt-in retry of the transport: a 401 invalid_token is retried once
// with a fresh token when Reacquire allows it (the body is sent again); a
// 401 delegation_revoked never is, and ends the source.
func TestTokenSourceTransportRetry(t *testing.T) {
	invalid := func(w http.ResponseWriter) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentpass", error="invalid_token", error_description="invalid_token"`)
		writeErr(w, http.StatusUnauthorized, pass.CodeInvalidToken)
	}
	revoked := func(w http.ResponseWriter) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentpass", error="invalid_token", error_description="delegation_revoked"`)
		writeErr(w, http.StatusUnauthorized, pass.CodeDelegationRevoked)
	}
	tests := []struct {
		name       string
		first      func(http.ResponseWriter)
		opts       TokenSourceOptions
		wantStatus int
		wantIssued int
		wantCalls  int
		after      error // what Token says afterwards
	}{
		{name: "retried", first: invalid, opts: TokenSourceOptions{RetryInvalidToken: true, Reacquire: true}, wantStatus: 200, wantIssued: 2, wantCalls: 2},
		{name: "not opted in", first: invalid, opts: TokenSourceOptions{Reacquire: true}, wantStatus: 401, wantIssued: 1, wantCalls: 1},
		{name: "no reacquire", first: invalid, opts: TokenSourceOptions{RetryInvalidToken: true}, wantStatus: 401, wantIssued: 1, wantCalls: 1, after: ErrTokenExpired},
		{name: "revoked", first: revoked, opts: TokenSourceOptions{RetryInvalidToken: true, Reacquire: true}, wantStatus: 401, wantIssued: 1, wantCalls: 1, after: pass.ErrRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			var mu sync.Mutex
			var bodies []string
			f.api = func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies = append(bodies, string(b))
				n := len(bodies)
				mu.Unlock()
				if n == 1 {
					tt.first(w)
					return
				}
				writeJSON(w, 200, map[string]any{})
			}
			c, _ := f.client(Config{})
			ts := c.TokenSource(bearerRequest(), tt.opts)
			hc := &http.Client{Transport: ts.Transport(f.httpClient().Transport)}
			resp, err := hc.Post(svcOrigin+"/api/tickets", "application/json", bytes.NewReader([]byte(`{"title":"x"}`)))
			if err != nil {
				t.Fatal(err)
			}
			apiErr := CheckResponse(resp)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d (%v), want %d", resp.StatusCode, apiErr, tt.wantStatus)
			}
			if tt.wantStatus == 401 && !errors.Is(apiErr, ErrTokenRejected) {
				t.Errorf("CheckResponse after the peek: %v, want the 401 with its body", apiErr)
			}
			if tt.name == "revoked" {
				if !errors.Is(apiErr, pass.ErrRevoked) {
					t.Errorf("CheckResponse = %v, want delegation_revoked read from the restored body", apiErr)
				}
			}
			if n := len(f.callsTo(authSvc + "/issue")); n != tt.wantIssued {
				t.Errorf("issuances = %d, want %d", n, tt.wantIssued)
			}
			mu.Lock()
			for _, b := range bodies {
				if b != `{"title":"x"}` {
					t.Errorf("API body = %q", b)
				}
			}
			if len(bodies) != tt.wantCalls {
				t.Errorf("API calls = %d, want %d", len(bodies), tt.wantCalls)
			}
			mu.Unlock()
			if tt.after != nil {
				_, err := ts.Token(context.Background())
				if !errors.Is(err, tt.after) {
					t.Errorf("Token afterwards: %v, want %v", err, tt.after)
				}
				if n := len(f.callsTo(authSvc + "/issue")); n != tt.wantIssued {
					t.Errorf("issuances after Token = %d, want %d", n, tt.wantIssued)
				}
			}
		})
	}
}

// Bad 401 answers never panic the peek and keep the body readable.
func TestPeekAPIError(t *testing.T) {
	for _, body := range []string{"", "not json", `{"error":{}}`, strings.Repeat("x", 2*maxAPIErrorBody)} {
		resp := &http.Response{StatusCode: 401, Header: http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`}}, Body: io.NopCloser(strings.NewReader(body))}
		e := peekAPIError(resp)
		if e.Code != pass.CodeInvalidToken {
			t.Errorf("code = %q, want invalid_token from the header", e.Code)
		}
		got, _ := io.ReadAll(resp.Body)
		if string(got) != body {
			t.Errorf("body after the peek has %d bytes, want %d", len(got), len(body))
		}
	}
}

// Progress lines a CLI prints as is: no request id, no control characters
// from a peer.
func TestProgressString(t *testing.T) {
	for _, tt := range []struct {
		p    Progress
		want string
	}{
		{Progress{Event: EventPending, ApprovalURL: "https://idp.test/approve/m1", RequestID: requestID}, "waiting for approval at https://idp.test/approve/m1"},
		{Progress{Event: EventPending, Authority: authSvc}, "waiting for approval by " + authSvc},
		{Progress{Event: EventDenied, Authority: authSvc, Reason: "no\x1b[2J\nway"}, "denied by " + authSvc + ": no?[2J?way"},
		{Progress{Event: EventApproved, Authority: authSvc, RequestID: requestID}, "approved by " + authSvc},
		{Progress{Event: EventRedeemed, Service: svcOrigin, Scope: pass.Scope{"tickets:read"}}, "redeemed at " + svcOrigin + " for [tickets:read]"},
		{Progress{Event: "odd\x07"}, "odd?"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%s: String() = %q, want %q", tt.p.Event, got, tt.want)
		}
		if strings.Contains(tt.p.String(), requestID) {
			t.Errorf("%s: String() shows the request id", tt.p.Event)
		}
	}
}
