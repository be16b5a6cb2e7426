package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

const eventsPath = "/agentpass/events"

// pushEnv starts a Service that receives pushed events, with the
// Enterprise Authority speaking the mission extension.
func pushEnv(t *testing.T, mutate func(*service.Config)) *env {
	t.Helper()
	e := newEnv(t, func(c *service.Config) {
		c.EventDelivery = pass.DeliveryPush
		if mutate != nil {
			mutate(c)
		}
	})
	e.idp.speakMission()
	return e
}

// set is a SET about authorization id from a, of type typ, with the
// mission member m (nil for none).
func (a *fakeAuthority) set(id, typ string, m *secevent.Mission) secevent.SET {
	return secevent.SET{
		Issuer: a.origin, Audience: appURL, IssuedAt: a.e.clock.Now(), Subject: id,
		Txn:   "msn_x:1",
		Event: secevent.Event{Type: typ, Timestamp: a.e.clock.Now().Unix(), InitiatingEntity: secevent.InitiatorAdmin, Mission: m},
	}
}

// sign signs s with key (a's current key when nil).
func (a *fakeAuthority) signSET(t testing.TB, s secevent.SET, key *dpop.Key) string {
	t.Helper()
	if key == nil {
		key = a.keys.Current()
	}
	raw, _, err := secevent.Sign(key, s)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// push POSTs raw to the receiver as a SET.
func (e *env) push(raw string) *response {
	e.t.Helper()
	return e.do(http.MethodPost, appURL+eventsPath, http.Header{"Content-Type": {"application/secevent+jwt"}}, strings.NewReader(raw))
}

// setErr decodes an RFC 8935 error body.
func (r *response) setErr() pass.SETError {
	var se pass.SETError
	_ = json.Unmarshal(r.body, &se)
	return se
}

func (e *env) wantPush(t *testing.T, what, raw string, status int, code string) {
	t.Helper()
	r := e.push(raw)
	if r.status != status || r.setErr().Err != code {
		t.Fatalf("%s: push = %d %s, want %d %q", what, r.status, r.body, status, code)
	}
}

func msn(id string, state pass.MissionState, version int64) *secevent.Mission {
	return &secevent.Mission{ID: id, State: string(state), Version: version}
}

// The events extension names one method; a pushing Service's receiver is
// on its own origin, a polling one has none; anything else is refused at
// New.
func TestEventsConfiguration(t *testing.T) {
	for _, tc := range []struct {
		method, receiver string
	}{
		{pass.DeliveryPush, appURL + eventsPath},
		{pass.DeliveryPoll, ""},
	} {
		e := newEnv(t, func(c *service.Config) { c.EventDelivery = tc.method })
		// X1: still a valid v0.1 configuration.
		r := e.do(http.MethodGet, e.svc.ConfigurationURL(), nil, nil)
		validJSON(t, r.body, "service-configuration.schema.json", "")
		ev, err := pass.ServiceEventsFrom(e.svc.Configuration().Extensions, appURL)
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		if ev.DeliveryMethod != tc.method || ev.Receiver != tc.receiver || !cmp.Equal(ev.EventsAccepted, secevent.Types()) {
			t.Errorf("%s: advertised %+v", tc.method, ev)
		}
	}
	e := newEnv(t, nil)
	if e.svc.Configuration().Extensions.Has(pass.ExtEvents) {
		t.Error("events advertised without EventDelivery")
	}
	if r := e.push("x"); r.status != http.StatusNotFound {
		t.Errorf("receiver without push delivery: %d", r.status)
	}
	cfg := e.cfg
	cfg.EventDelivery = "both"
	if _, err := service.New(cfg); err == nil {
		t.Error("New accepted EventDelivery \"both\"")
	}
}

// E1 (functional twin) and E13: a pushed revocation, or the mission's
// completion, refuses the next request at once, with no authorization
// check made.
func TestEventRefusesAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name, typ string
		state     pass.MissionState
	}{
		{"session-revoked", secevent.SessionRevoked, pass.MissionRevoked},
		{"mission-completed", secevent.MissionCompleted, pass.MissionCompleted},
		{"session-revoked for a completed mission (CAEP-only Service)", secevent.SessionRevoked, pass.MissionCompleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := pushEnv(t, nil)
			tok, id := e.missionToken(t, mission("msn_a", pass.MissionActive, 1), "tickets:read")
			e.wantStatus(t, "before", "/api/tickets", tok, http.StatusOK, "")
			e.wantPush(t, "revocation", e.idp.signSET(t, e.idp.set(id, tc.typ, msn("msn_a", tc.state, 2)), nil), http.StatusAccepted, "")
			e.wantStatus(t, "after", "/api/tickets", tok, http.StatusUnauthorized, pass.CodeDelegationRevoked)
			if n := e.idp.checkCalls.Load(); n != 0 {
				t.Errorf("%d authorization checks, want 0", n)
			}
		})
	}
}

// E2 and bad input: a SET signed by another key, naming another issuer,
// for another audience, malformed, with sub or without a jti, replayed,
// or about another mission is refused with the RFC 8935 error (or accepted
// and ignored), and nothing is applied.
func TestEventRefusals(t *testing.T) {
	e := pushEnv(t, nil)
	tok, id := e.missionToken(t, mission("msn_r", pass.MissionActive, 1), "tickets:read")
	other, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	revoke := func() secevent.SET {
		return e.idp.set(id, secevent.SessionRevoked, msn("msn_r", pass.MissionRevoked, 2))
	}
	wrongIss := revoke()
	wrongIss.Issuer = e.fed.origin
	wrongAud := revoke()
	wrongAud.Audience = "https://other.test"
	old := revoke()
	old.IssuedAt = e.clock.Now().Add(-31 * time.Minute)
	for _, tc := range []struct {
		name, raw, code string
	}{
		{"another key", e.idp.signSET(t, revoke(), other.Current()), "invalid_key"},
		{"another trusted Authority's key", e.fed.signSET(t, revoke(), nil), "invalid_key"},
		{"another issuer", e.idp.signSET(t, wrongIss, nil), "invalid_issuer"},
		{"wrong audience", e.idp.signSET(t, wrongAud, nil), "invalid_audience"},
		{"pushed too late", e.idp.signSET(t, old, nil), "invalid_request"},
		{"malformed", "not.a.jwt", "invalid_request"},
		{"empty", "", "invalid_request"},
		{"unsigned", strings.Join(strings.Split(e.idp.signSET(t, revoke(), nil), ".")[:2], ".") + ".", "invalid_key"},
	} {
		e.wantPush(t, tc.name, tc.raw, http.StatusBadRequest, tc.code)
	}
	// About another mission of the same Authority: accepted, not applied.
	e.wantPush(t, "another mission", e.idp.signSET(t, e.idp.set(id, secevent.SessionRevoked, msn("msn_other", pass.MissionRevoked, 9)), nil), http.StatusAccepted, "")
	e.wantMission(t, id, pass.MissionActive, 1)
	e.wantStatus(t, "after the refusals", "/api/tickets", tok, http.StatusOK, "")
	if n := len(e.logs.records("agentpass event")); n == 0 {
		t.Error("no audit record of the refusals")
	}
	if strings.Contains(e.logs.String(), tok) {
		t.Error("the log holds the bearer token")
	}
}

// E3: the same SET twice is applied once; a captured mission-resumed
// replayed after a newer suspension changes nothing.
func TestEventReplay(t *testing.T) {
	e := pushEnv(t, nil)
	tok, id := e.missionToken(t, mission("msn_p", pass.MissionActive, 5), "tickets:read")
	resumed := e.idp.signSET(t, e.idp.set(id, secevent.MissionResumed, msn("msn_p", pass.MissionActive, 5)), nil)
	suspended := e.idp.signSET(t, e.idp.set(id, secevent.MissionSuspended, msn("msn_p", pass.MissionSuspended, 6)), nil)
	e.wantPush(t, "suspended", suspended, http.StatusAccepted, "")
	e.wantPush(t, "suspended again", suspended, http.StatusAccepted, "")
	e.wantPush(t, "old resumed", resumed, http.StatusAccepted, "")
	e.wantPush(t, "old resumed again", resumed, http.StatusAccepted, "")
	e.wantMission(t, id, pass.MissionSuspended, 6)
	e.wantStatus(t, "held", "/api/tickets", tok, http.StatusForbidden, pass.CodeMissionSuspended)
	var applied, dup, stale int
	for _, r := range e.logs.records("agentpass event") {
		switch r["outcome"] {
		case "applied":
			applied++
		case "duplicate":
			dup++
		case "stale":
			stale++
		}
	}
	if applied != 1 || dup != 2 || stale != 1 {
		t.Errorf("outcomes: applied %d, duplicate %d, stale %d; want 1, 2, 1", applied, dup, stale)
	}
	if n := e.idp.checkCalls.Load(); n != 0 {
		t.Errorf("%d checks, want 0 (a hold needs none)", n)
	}
}

// Review O4: a pushed SET whose iat is the full skew ahead is accepted
// until iat + PushMaxAge + Skew; its jti is remembered at least as long, so
// a replay one second before the age check refuses it is a duplicate, and
// at that instant the age check takes over.
func TestReviewPushedSETReplayWindow(t *testing.T) {
	e := pushEnv(t, nil)
	_, id := e.missionToken(t, mission("msn_w", pass.MissionActive, 5), "tickets:read")
	s := e.idp.set(id, secevent.MissionSuspended, msn("msn_w", pass.MissionSuspended, 6))
	s.IssuedAt = e.clock.Now().Add(secevent.Skew)
	raw := e.idp.signSET(t, s, nil)
	e.wantPush(t, "first", raw, http.StatusAccepted, "")
	last := func() any {
		r := e.logs.records("agentpass event")
		if len(r) == 0 {
			t.Fatal("no event record")
		}
		return r[len(r)-1]["outcome"]
	}
	if o := last(); o != "applied" {
		t.Fatalf("first push: outcome %v, want applied", o)
	}
	end := s.IssuedAt.Add(secevent.PushMaxAge + secevent.Skew)
	e.clock.Advance(end.Add(-time.Second).Sub(e.clock.Now()))
	e.wantPush(t, "replay just inside the window", raw, http.StatusAccepted, "")
	if o := last(); o != "duplicate" {
		t.Errorf("replay 1 s before the window ends: outcome %v, want duplicate", o)
	}
	e.clock.Advance(time.Second)
	e.wantPush(t, "replay at the window's end", raw, http.StatusBadRequest, "invalid_request")
}

// E5: v7 after v5 narrows at once and makes the next request run exactly
// one check; E4: an older event after it changes nothing.
func TestEventGap(t *testing.T) {
	e := pushEnv(t, nil)
	tok, id := e.missionToken(t, mission("msn_g", pass.MissionActive, 5), "tickets:read", "tickets:write")
	narrow := e.idp.set(id, secevent.TokenClaimsChange, msn("msn_g", pass.MissionActive, 7))
	narrow.Event.Claims = &secevent.Claims{Scope: "tickets:write"}
	e.wantPush(t, "narrowing v7", e.idp.signSET(t, narrow, nil), http.StatusAccepted, "")
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:write"}, Mission: mission("msn_g", pass.MissionActive, 7)})
	e.wantStatus(t, "narrowed", "/api/tickets", tok, http.StatusForbidden, pass.CodeInsufficientScope)
	if n := e.idp.checkCalls.Load(); n != 1 {
		t.Fatalf("%d checks after the gap, want 1", n)
	}
	e.wantStatus(t, "narrowed, checked", "/", tok, http.StatusOK, "")
	if n := e.idp.checkCalls.Load(); n != 1 {
		t.Errorf("%d checks, want still 1", n)
	}
	stage := e.idp.set(id, secevent.MissionStageChanged, msn("msn_g", pass.MissionActive, 6))
	stage.Event.Scope = "tickets:read tickets:write"
	e.wantPush(t, "older stage change", e.idp.signSET(t, stage, nil), http.StatusAccepted, "")
	d, _ := e.store.Delegation(t.Context(), id)
	if d.Stale || d.MissionVersion != 7 || !cmp.Equal(d.CurrentScope, pass.Scope{"tickets:write"}) {
		t.Errorf("after the older event: %+v", d)
	}
}

// E6: mission-resumed releases nothing by itself: the next request checks;
// while the Authority still says suspended the hold stays; its 200 releases.
func TestEventResumeNeedsCheck(t *testing.T) {
	e := pushEnv(t, nil)
	tok, id := e.missionToken(t, mission("msn_s", pass.MissionActive, 1), "tickets:read")
	e.wantPush(t, "suspended", e.idp.signSET(t, e.idp.set(id, secevent.MissionSuspended, msn("msn_s", pass.MissionSuspended, 2)), nil), http.StatusAccepted, "")
	e.wantStatus(t, "held", "/api/tickets", tok, http.StatusForbidden, pass.CodeMissionSuspended)
	e.wantPush(t, "resumed", e.idp.signSET(t, e.idp.set(id, secevent.MissionResumed, msn("msn_s", pass.MissionActive, 3)), nil), http.StatusAccepted, "")
	e.idp.suspend(id, mission("msn_s", pass.MissionSuspended, 2))
	e.wantStatus(t, "resumed, Authority says suspended", "/api/tickets", tok, http.StatusForbidden, pass.CodeMissionSuspended)
	if n := e.idp.checkCalls.Load(); n != 1 {
		t.Fatalf("%d checks, want 1", n)
	}
	e.idp.suspend(id, nil)
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}, Mission: mission("msn_s", pass.MissionActive, 3)})
	e.clock.Advance(31 * time.Second)
	e.wantStatus(t, "released", "/api/tickets", tok, http.StatusOK, "")
	e.wantMission(t, id, pass.MissionActive, 3)
}

// E12: a SET about an unknown authorization id is accepted with no key
// fetched; 17 KiB is 413; text/plain is 415; a flood is refused before
// anything is parsed.
func TestEventReceiverBounds(t *testing.T) {
	e := pushEnv(t, func(c *service.Config) {
		c.RateLimits.Events = service.RateLimit{Client: service.Rate{PerSecond: 1, Burst: 5}}
	})
	e.wantPush(t, "unknown subject", e.idp.signSET(t, e.idp.set("authz-unknown", secevent.SessionRevoked, nil), nil), http.StatusAccepted, "")
	if n := e.idp.jwksCalls.Load(); n != 0 {
		t.Errorf("%d JWKS fetches for an unknown subject, want 0", n)
	}
	if r := e.push(strings.Repeat("a", 17<<10)); r.status != http.StatusRequestEntityTooLarge || r.setErr().Err != "invalid_request" {
		t.Errorf("17 KiB: %d %s", r.status, r.body)
	}
	r := e.do(http.MethodPost, appURL+eventsPath, http.Header{"Content-Type": {"text/plain"}}, strings.NewReader("x"))
	if r.status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d %s", r.status, r.body)
	}
	// Two more within the burst of 5, then refused before parsing.
	e.push("x")
	e.push("x")
	if r := e.push("x"); r.status != http.StatusTooManyRequests {
		t.Errorf("over the limit: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, appURL+eventsPath, nil, nil); r.status != http.StatusTooManyRequests && r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", r.status)
	}
}

// §9 fix 7: a revocation from a trusted Authority that overtakes the
// redemption it revokes is kept and applied when the redemption commits;
// one from an Authority nobody trusts costs no key fetch.
func TestEventBeforeRedemption(t *testing.T) {
	e := pushEnv(t, nil)
	// The first redemption makes the Enterprise Authority known.
	e.missionToken(t, mission("msn_1", pass.MissionActive, 1), "tickets:read")
	id := "authz-" + randomID()
	e.wantPush(t, "early revocation", e.idp.signSET(t, e.idp.set(id, secevent.SessionRevoked, msn("msn_2", pass.MissionRevoked, 2)), nil), http.StatusAccepted, "")
	e.wantPush(t, "rogue", e.rogue.signSET(t, e.rogue.set("authz-x", secevent.SessionRevoked, nil), nil), http.StatusAccepted, "")
	// A forged SET in a trusted Authority's name is answered as for any
	// unknown subject, and not kept.
	other, _ := dpop.GenerateKeySet()
	e.wantPush(t, "forged early revocation", e.idp.signSET(t, e.idp.set("authz-forged", secevent.SessionRevoked, nil), other.Current()), http.StatusAccepted, "")
	if n := e.rogue.jwksCalls.Load(); n != 0 {
		t.Errorf("%d JWKS fetches at an untrusted Authority", n)
	}
	vr := validation(corpUser, pass.BearerToken, "tickets:read")
	vr.AuthorizationID, vr.Mission = id, mission("msn_2", pass.MissionActive, 1)
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr)), nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	e.wantStatus(t, "revoked before redemption", "/api/tickets", resp.BearerToken, http.StatusUnauthorized, pass.CodeDelegationRevoked)

	vr = validation(corpUser, pass.BearerToken, "tickets:read")
	vr.AuthorizationID, vr.Mission = "authz-forged", mission("msn_3", pass.MissionActive, 1)
	r = e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr)), nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	r.decode(t, &resp)
	e.wantStatus(t, "the forged revocation was not kept", "/api/tickets", resp.BearerToken, http.StatusOK, "")
}

// D11: the end of a parent mission ends the child delegations this
// Service holds, even when the children's own SETs are lost.
func TestEventLocalCascade(t *testing.T) {
	e := pushEnv(t, nil)
	parentTok, parentID := e.missionToken(t, mission("msn_parent", pass.MissionActive, 1), "tickets:read")
	child := mission("msn_child", pass.MissionActive, 1)
	child.Parent = "msn_parent"
	childTok, _ := e.missionToken(t, child, "tickets:read")
	e.wantStatus(t, "child before", "/api/tickets", childTok, http.StatusOK, "")
	e.wantPush(t, "parent revoked", e.idp.signSET(t, e.idp.set(parentID, secevent.SessionRevoked, msn("msn_parent", pass.MissionRevoked, 2)), nil), http.StatusAccepted, "")
	e.wantStatus(t, "parent", "/api/tickets", parentTok, http.StatusUnauthorized, pass.CodeDelegationRevoked)
	e.wantStatus(t, "child", "/api/tickets", childTok, http.StatusUnauthorized, pass.CodeDelegationRevoked)
}

// FuzzReceiver: whatever the body, the receiver answers 202, 400 or 413
// in the RFC 8935 shape, never panics, and never touches a delegation
// the body cannot name with a valid signature.
func FuzzReceiver(f *testing.F) {
	e := newNet(f)
	e.start(func(c *service.Config) {
		c.EventDelivery = pass.DeliveryPush
		c.RateLimits.Events = service.RateLimit{Client: service.Rate{PerSecond: -1}, Network: service.Rate{PerSecond: -1}, Overall: service.Rate{PerSecond: -1}}
		// One audit record per input would grow the test's log buffer
		// without bound and cost more than the handler.
		c.Logger = slog.New(slog.DiscardHandler)
	})
	e.idp.speakMission()
	vr := validation(corpUser, pass.BearerToken, "tickets:read")
	vr.AuthorizationID, vr.Mission = "authz-canary", mission("msn_canary", pass.MissionActive, 1)
	if r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr)), nil); r.status != http.StatusOK {
		f.Fatalf("redeem: %d %s", r.status, r.body)
	}
	other, _ := dpop.GenerateKeySet()
	for _, s := range []secevent.SET{
		e.idp.set("authz-canary", secevent.SessionRevoked, msn("msn_canary", pass.MissionRevoked, 2)),
		e.idp.set("authz-nobody", secevent.MissionSuspended, msn("msn_x", pass.MissionSuspended, 3)),
	} {
		f.Add(e.idp.signSET(f, s, other.Current()))
	}
	f.Add(e.idp.signSET(f, e.idp.set("authz-nobody", secevent.TokenClaimsChange, nil), nil))
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoic2VjZXZlbnQrand0In0.e30.")
	f.Fuzz(func(t *testing.T, body string) {
		// In process: the same handler, without a TLS round trip per input.
		req := httptest.NewRequest(http.MethodPost, appURL+eventsPath, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/secevent+jwt")
		w := httptest.NewRecorder()
		e.svc.ServeHTTP(w, req)
		r := &response{status: w.Code, body: w.Body.Bytes()}
		switch r.status {
		case http.StatusAccepted:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if r.setErr().Err == "" {
				t.Fatalf("%d without an RFC 8935 err: %s", r.status, r.body)
			}
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		d, err := e.store.Delegation(t.Context(), "authz-canary")
		if err != nil || d.Invalidated || d.Stale || d.MissionVersion != 1 {
			t.Fatalf("the canary delegation changed: %+v, %v", d, err)
		}
	})
}

// RunEventPoller long-polls the Authority with a Service assertion,
// applies what it gets, acknowledges what it applied or ignored, reports
// what it refused in setErrs, and refuses to run without poll delivery.
func TestEventPoller(t *testing.T) {
	e := newEnv(t, func(c *service.Config) { c.EventDelivery = pass.DeliveryPoll })
	e.idp.speakMission()
	e.idp.setConfig(func(c *pass.AuthorityConfiguration) {
		x, err := pass.AuthorityEvents{DeliveryMethods: []string{pass.DeliveryPoll}, Poll: e.idp.origin + "/events/poll"}.Extension()
		if err == nil {
			c.Extensions, err = c.Extensions.With(pass.ExtEvents, x)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	tok, id := e.missionToken(t, mission("msn_poll", pass.MissionActive, 1), "tickets:read")
	other, _ := dpop.GenerateKeySet()
	good := e.idp.set(id, secevent.MissionSuspended, msn("msn_poll", pass.MissionSuspended, 2))
	good.JTI = "set-good"
	bad := e.idp.set(id, secevent.SessionRevoked, msn("msn_poll", pass.MissionRevoked, 3))
	bad.JTI = "set-bad"
	first := pass.PollResponse{Sets: map[string]string{"set-good": e.idp.signSET(t, good, nil), "set-bad": e.idp.signSET(t, bad, other.Current())}}
	requests := make(chan pass.PollRequest, 4)
	var served atomic.Int32
	e.idp.mu.Lock()
	e.idp.poll = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			http.Error(w, "no assertion", http.StatusUnauthorized)
			return
		}
		var req pass.PollRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case requests <- req:
		default:
		}
		if served.Add(1) == 1 {
			httpx.WriteJSON(w, http.StatusOK, first)
			return
		}
		// Later polls: hold until the test ends, as a long poll would.
		<-r.Context().Done()
	})
	e.idp.mu.Unlock()

	cfg := e.cfg
	cfg.EventDelivery = pass.DeliveryPush
	pushing, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pushing.RunEventPoller(t.Context()); err == nil {
		t.Fatal("RunEventPoller ran on a pushing Service")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.svc.RunEventPoller(ctx) }()
	<-requests
	second := <-requests
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("RunEventPoller returned %v", err)
	}
	if !cmp.Equal(second.Ack, []string{"set-good"}) || len(second.SetErrs) != 1 || second.SetErrs["set-bad"].Err != "invalid_key" {
		t.Errorf("second poll acked %v, setErrs %v", second.Ack, second.SetErrs)
	}
	e.wantMission(t, id, pass.MissionSuspended, 2)
	e.wantStatus(t, "held by a polled SET", "/api/tickets", tok, http.StatusForbidden, pass.CodeMissionSuspended)
}

// Keys come from the delegation's Authority through the discovery cache:
// the first SET fetches its JWKS once; an unknown kid refetches once, and a
// flood of unknown kids within the cooldown refetches nothing more.
func TestEventKeyFetches(t *testing.T) {
	e := pushEnv(t, nil)
	_, id := e.missionToken(t, mission("msn_k", pass.MissionActive, 1), "tickets:read")
	other, _ := dpop.GenerateKeySet()
	e.wantPush(t, "hold", e.idp.signSET(t, e.idp.set(id, secevent.MissionSuspended, msn("msn_k", pass.MissionSuspended, 2)), nil), http.StatusAccepted, "")
	base := e.idp.jwksCalls.Load()
	if base < 1 || base > 2 {
		t.Fatalf("%d JWKS fetches after the first SET, want 1 (2 if redemption fetched it)", base)
	}
	forged := e.idp.signSET(t, e.idp.set(id, secevent.SessionRevoked, msn("msn_k", pass.MissionRevoked, 3)), other.Current())
	for range 5 {
		e.wantPush(t, "unknown kid", forged, http.StatusBadRequest, "invalid_key")
	}
	if n := e.idp.jwksCalls.Load() - base; n > 1 {
		t.Errorf("%d JWKS refetches for 5 unknown kids, want at most 1", n)
	}
	e.wantMission(t, id, pass.MissionSuspended, 2)
}
