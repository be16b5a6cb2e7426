package authority_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// receiver is a small RFC 8935 receiver on the test Service's own origin:
// it answers the statuses queued with fail, then 202, and hands every SET
// it received to got.
type receiver struct {
	mu         sync.Mutex
	fail       []int
	always     int
	retryAfter string
	got        chan string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Content-Type") != "application/secevent+jwt" || r.Header.Get("Accept") != "application/json" {
		w.WriteHeader(http.StatusUnsupportedMediaType)
		return
	}
	var b strings.Builder
	buf := make([]byte, 1024)
	for {
		n, err := r.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	rc.got <- b.String()
	rc.mu.Lock()
	status := http.StatusAccepted
	switch {
	case len(rc.fail) > 0:
		status, rc.fail = rc.fail[0], rc.fail[1:]
	case rc.always != 0:
		status = rc.always
	}
	if rc.retryAfter != "" {
		w.Header().Set("Retry-After", rc.retryAfter)
	}
	rc.mu.Unlock()
	if status == http.StatusBadRequest {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"err":"invalid_key","description":"unknown kid"}`))
		return
	}
	w.WriteHeader(status)
}

// withEvents makes svc advertise events with method (push to receiver at
// path /events on its origin, or poll) and serves the receiver there.
func withEvents(e *env, svc *deploy.TestService, method, receiverURL string) *receiver {
	e.t.Helper()
	rc := &receiver{got: make(chan string, 64)}
	se := pass.ServiceEvents{DeliveryMethod: method, EventsAccepted: secevent.Types()}
	if method == pass.DeliveryPush {
		se.Receiver = receiverURL
	}
	// Built by hand so a receiver elsewhere can be advertised too.
	ext := pass.Extension{Version: "1.0"}
	if se.Receiver != "" {
		ext.Endpoints = map[string]string{"receiver": se.Receiver}
	}
	ext, _ = ext.WithMember("delivery_methods", []string{method})
	ext, _ = ext.WithMember("events_accepted", se.EventsAccepted)
	x, err := pass.Extensions{}.With(pass.ExtEvents, ext)
	if err != nil {
		e.t.Fatal(err)
	}
	svc.SetExtensions(x)
	host := strings.TrimPrefix(svc.Origin, "https://")
	mux := http.NewServeMux()
	mux.Handle("/events", rc)
	mux.Handle("/", svc)
	e.net.Serve(host, mux)
	return rc
}

// redeemedMission issues and validates a pass at e.svc, returning the
// authorization and mission ids.
func (e *env) redeemedMission() (authzID, missionID string) {
	e.t.Helper()
	value, _ := e.approvedPass(e.newHarness())
	r, v := e.validate(e.svc, value)
	if v == nil {
		e.t.Fatalf("validation: %d %s", r.status, r.body)
	}
	az, err := e.auth.Authorization(ctx, v.AuthorizationID)
	if err != nil {
		e.t.Fatal(err)
	}
	return az.ID, az.MissionID
}

// verifySET checks a received SET against the Authority's keys.
func (e *env) verifySET(raw string) *secevent.SET {
	e.t.Helper()
	tok, err := secevent.Parse(raw)
	if err != nil {
		e.t.Fatalf("SET refused: %v", err)
	}
	for _, k := range e.authKeys() {
		if set, err := tok.VerifyWith(&k, authID, e.svc.Origin); err == nil {
			return set
		}
	}
	e.t.Fatalf("SET does not verify with the Authority's keys")
	return nil
}

func (e *env) authKeys() []jose.JSONWebKey {
	r := e.do(http.MethodGet, e.base+"/jwks.json", nil, nil)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.body, &set); err != nil {
		e.t.Fatal(err)
	}
	return set.Keys
}

func receive(t *testing.T, rc *receiver) string {
	t.Helper()
	select {
	case s := <-rc.got:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no SET received")
		return ""
	}
}

func claims(t *testing.T, raw string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func runTransmitter(t *testing.T, a *authority.Authority) {
	t.Helper()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.RunEventTransmitter(cctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("RunEventTransmitter returned %v", err)
		}
	})
}

// The Authority publishes the events extension: both methods, its poll
// endpoint, the event types it sends.
func TestEventsAdvertised(t *testing.T) {
	e := newEnv(t)
	got, ok := pass.AuthorityEventsFrom(e.auth.Configuration().Extensions)
	if !ok {
		t.Fatal("no events extension")
	}
	want := pass.AuthorityEvents{DeliveryMethods: []string{pass.DeliveryPush, pass.DeliveryPoll}, Poll: authID + "/events/poll", EventTypes: secevent.Types()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events extension (-want +got):\n%s", diff)
	}
}

// A revocation is pushed to the Service's receiver over real TLS as a SET
// of the profile (E9): typ, iss, aud, opaque sub_id = authorization_id,
// txn = the history entry, one session-revoked event carrying the
// mission's new version; no sub, no exp.
func TestEventsPushRevocation(t *testing.T) {
	e := newEnv(t, approveAll)
	rc := withEvents(e, e.svc, pass.DeliveryPush, e.svc.Origin+"/events")
	authz, mission := e.redeemedMission()
	runTransmitter(t, e.auth)
	rec, err := e.auth.Revoke(ctx, mission, "human:op@corp.test", "contractor offboarded")
	if err != nil {
		t.Fatal(err)
	}
	raw := receive(t, rc)
	set := e.verifySET(raw)
	if set.Subject != authz || set.Event.Type != secevent.SessionRevoked || set.Issuer != authID {
		t.Errorf("SET = %+v", set)
	}
	m := set.Event.Mission
	if m == nil || m.ID != mission || m.Version != rec.Version || m.State != "revoked" || m.PriorState != "active" || m.Cause != pass.CauseOperator {
		t.Errorf("agentpass_mission = %+v, record version %d", m, rec.Version)
	}
	if set.Event.InitiatingEntity != secevent.InitiatorAdmin || set.Event.ReasonAdmin["en"] != "contractor offboarded" {
		t.Errorf("event = %+v", set.Event)
	}
	h, _ := e.auth.Request(ctx, mission)
	if want := mission + ":" + itoa(h.HistoryCount); set.Txn != want {
		t.Errorf("txn %q, want %q", set.Txn, want)
	}
	c := claims(t, raw)
	for _, absent := range []string{"sub", "exp"} {
		if _, ok := c[absent]; ok {
			t.Errorf("claim %s present", absent)
		}
	}
	if strings.Contains(raw, userEmail) || strings.Contains(string(mustB64(raw)), taskDesc) {
		t.Error("the SET carries the user or the task")
	}
}

func mustB64(raw string) []byte {
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	return b
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// A Service whose receiver is on another origin gets nothing pushed: the
// Authority is no reflector (§9 fix 8). Nor does a Service without the
// events extension get anything queued.
func TestEventsReceiverElsewhere(t *testing.T) {
	store := authority.NewMemoryStore()
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = store })
	victim := &receiver{got: make(chan string, 1)}
	e.net.Serve(otherHost, victim)
	withEvents(e, e.svc, pass.DeliveryPush, "https://"+otherHost+"/events")
	_, mission := e.redeemedMission()
	if _, err := e.auth.Revoke(ctx, mission, "human:op", ""); err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	if evs, _ := store.ClaimEvents(ctx, "probe", now, now.Add(time.Minute), 10, 10); len(evs) != 0 {
		t.Fatalf("%d SETs queued for a receiver on another origin", len(evs))
	}
	if evs, _, _ := store.PollEvents(ctx, e.svc.Origin, 10, now); len(evs) != 0 {
		t.Fatalf("%d SETs queued for polling", len(evs))
	}
}

// E7: a receiver down answers 503; the same SET (same jti) is retried
// with backoff and delivered when it is back; one down beyond the
// 15-minute horizon makes the Authority give the SET up.
func TestEventsRetry(t *testing.T) {
	store := authority.NewMemoryStore()
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = store })
	e.auth.FixJitter(1)
	rc := withEvents(e, e.svc, pass.DeliveryPush, e.svc.Origin+"/events")
	_, mission := e.redeemedMission()
	rc.always = http.StatusServiceUnavailable
	if _, err := e.auth.Revoke(ctx, mission, "human:op", ""); err != nil {
		t.Fatal(err)
	}
	start := e.clock.Now()
	var waits []time.Duration
	var jtis []string
	for e.clock.Now().Sub(start) < 2*time.Minute {
		next, err := e.auth.DeliverDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		jtis = append(jtis, claims(t, receive(t, rc))["jti"].(string))
		at := next
		if at.IsZero() {
			t.Fatal("given up within 2 minutes")
		}
		waits = append(waits, at.Sub(e.clock.Now()))
		e.clock.Advance(at.Sub(e.clock.Now()))
	}
	wantWaits := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	if diff := cmp.Diff(wantWaits, waits[:4]); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
	if last := waits[len(waits)-1]; last != 30*time.Second {
		t.Errorf("backoff capped at %v, want 30s", last)
	}
	rc.mu.Lock()
	rc.always = 0
	rc.mu.Unlock()
	if _, err := e.auth.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	jtis = append(jtis, claims(t, receive(t, rc))["jti"].(string))
	for _, j := range jtis {
		if j != jtis[0] {
			t.Fatalf("retries changed the jti: %v", jtis)
		}
	}
	now := e.clock.Now()
	if evs, _ := store.ClaimEvents(ctx, "probe", now, now.Add(time.Minute), 10, 10); len(evs) != 0 {
		t.Fatalf("delivered SET still queued")
	}

	// Beyond the horizon: given up, and gone.
	_, mission = e.redeemedMission()
	rc.mu.Lock()
	rc.always = http.StatusServiceUnavailable
	rc.mu.Unlock()
	if _, err := e.auth.Revoke(ctx, mission, "human:op", ""); err != nil {
		t.Fatal(err)
	}
	start = e.clock.Now()
	for range 200 {
		next, err := e.auth.DeliverDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		receive(t, rc)
		at := next
		if at.IsZero() {
			break
		}
		e.clock.Advance(at.Sub(e.clock.Now()))
	}
	if d := e.clock.Now().Sub(start); d > authority.PushHorizon || d < authority.PushHorizon-31*time.Second {
		t.Errorf("gave up after %v, want just under %v", d, authority.PushHorizon)
	}
	now = e.clock.Now()
	if evs, _ := store.ClaimEvents(ctx, "probe", now.Add(time.Hour), now.Add(2*time.Hour), 10, 10); len(evs) != 0 {
		t.Error("SET still queued after the horizon")
	}
	if !strings.Contains(e.logs.String(), "given up after the retry horizon") {
		t.Error("giving up was not logged")
	}
}

// A 400 with an RFC 8935 err is final: logged with its code, not retried.
func TestEventsRefusedByReceiver(t *testing.T) {
	store := authority.NewMemoryStore()
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = store })
	rc := withEvents(e, e.svc, pass.DeliveryPush, e.svc.Origin+"/events")
	_, mission := e.redeemedMission()
	rc.fail = []int{http.StatusBadRequest}
	if _, err := e.auth.Revoke(ctx, mission, "human:op", ""); err != nil {
		t.Fatal(err)
	}
	next, err := e.auth.DeliverDue(ctx)
	if err != nil || !next.IsZero() {
		t.Fatalf("next %v err %v, want no retry", next, err)
	}
	receive(t, rc)
	now := e.clock.Now()
	if evs, _ := store.ClaimEvents(ctx, "probe", now, now.Add(time.Minute), 10, 10); len(evs) != 0 {
		t.Error("refused SET still queued")
	}
	if logs := e.logs.String(); !strings.Contains(logs, `"code":"invalid_key"`) {
		t.Errorf("refusal not logged with its code: %s", logs)
	}
}

// poll posts an RFC 8936 poll as svc.
func (e *env) pollEvents(svc *deploy.TestService, req pass.PollRequest) pass.PollResponse {
	e.t.Helper()
	status, body, err := svc.Post(e.net.Client(), e.base+"/events/poll", authID, req)
	if err != nil || status != http.StatusOK {
		e.t.Fatalf("poll: %d %s %v", status, body, err)
	}
	var out pass.PollResponse
	if err := json.Unmarshal(body, &out); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// A polling Service receives its SETs through the poll endpoint,
// authenticated by its assertion; acknowledged SETs never come back, a
// long poll is woken by the next change, and another Service sees none of
// them. A cascade's SETs share the root's txn (E9).
func TestEventsPoll(t *testing.T) {
	store := authority.NewMemoryStore()
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = store })
	withEvents(e, e.svc, pass.DeliveryPoll, "")
	authz, mission := e.redeemedMission()
	// A child mission redeemed at the same Service.
	child := authoritytestChild(t, store, mission, e.svc.Origin, e.clock.Now())

	if _, err := e.auth.Suspend(ctx, mission, "human:op", "review"); err != nil {
		t.Fatal(err)
	}
	got := e.pollEvents(e.svc, pass.PollRequest{ReturnImmediately: true})
	if len(got.Sets) != 2 {
		t.Fatalf("polled %d SETs, want 2 (mission and child)", len(got.Sets))
	}
	subjects := map[string]*secevent.SET{}
	var acks []string
	for jti, raw := range got.Sets {
		set := e.verifySET(raw)
		if set.JTI != jti || set.Event.Type != secevent.MissionSuspended || set.Event.Mission.State != "suspended" {
			t.Errorf("SET %+v", set)
		}
		subjects[set.Subject] = set
		acks = append(acks, jti)
	}
	if subjects[authz] == nil || subjects[child] == nil || subjects[authz].Txn != subjects[child].Txn {
		t.Errorf("subjects %v: want %s and %s with one txn", subjects, authz, child)
	}
	// Another Service sees nothing, and cannot acknowledge them.
	other := deploy.NewTestService(e.net, otherHost, e.auth.ConfigurationURL(), e.clock.Now)
	if o := e.pollEvents(other, pass.PollRequest{ReturnImmediately: true, Ack: acks}); len(o.Sets) != 0 {
		t.Errorf("another Service polled %d SETs", len(o.Sets))
	}
	if again := e.pollEvents(e.svc, pass.PollRequest{ReturnImmediately: true}); len(again.Sets) != 2 {
		t.Fatalf("unacknowledged SETs not returned again: %d", len(again.Sets))
	}
	if left := e.pollEvents(e.svc, pass.PollRequest{ReturnImmediately: true, Ack: acks}); len(left.Sets) != 0 {
		t.Errorf("acknowledged SETs returned: %d", len(left.Sets))
	}
	// A long poll returns the resumption once it is committed.
	polled := make(chan pass.PollResponse, 1)
	go func() {
		// Not e.pollEvents: a goroutine may not end the test.
		var out pass.PollResponse
		status, body, err := e.svc.Post(e.net.Client(), e.base+"/events/poll", authID, pass.PollRequest{})
		if err != nil || status != http.StatusOK || json.Unmarshal(body, &out) != nil {
			t.Errorf("long poll: %d %s %v", status, body, err)
		}
		polled <- out
	}()
	if _, err := e.auth.Resume(ctx, mission, "human:op"); err != nil {
		t.Fatal(err)
	}
	var resumed pass.PollResponse
	select {
	case resumed = <-polled:
	case <-time.After(10 * time.Second):
		t.Fatal("long poll not woken")
	}
	if len(resumed.Sets) == 0 {
		t.Fatal("long poll returned nothing")
	}
	for _, raw := range resumed.Sets {
		if set := e.verifySET(raw); set.Event.Type != secevent.MissionResumed {
			t.Errorf("long poll: %s", set.Event.Type)
		}
	}
}

// authoritytestChild stores an approved child of parent for svc and
// redeems it, returning its authorization id.
func authoritytestChild(t *testing.T, s authority.Store, parent, svc string, now time.Time) string {
	t.Helper()
	r := authoritytest.NewRequest("child")
	r.Service, r.DestinationURL, r.ParentMissionID, r.PassHash = svc, svc+"/inbox", parent, "hash-child"
	r.CreatedAt, r.ExpiresAt = now, now.Add(10*time.Minute)
	e := authoritytest.Approval("tickets:read")
	e.DecidedAt, e.PassExpiresAt, e.AuthorizationExpiresAt = now, now.Add(5*time.Minute), now.Add(30*time.Minute)
	r.Status, r.Decision = pass.StatusApproved, &e
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumePass(ctx, "hash-child", svc, "authz_child", now); err != nil {
		t.Fatal(err)
	}
	return "authz_child"
}

// A 429 with Retry-After waits as asked (within the 30-second cap), and
// the SET is then delivered.
func TestEventsRetryAfter(t *testing.T) {
	e := newEnv(t, approveAll)
	e.auth.FixJitter(1)
	rc := withEvents(e, e.svc, pass.DeliveryPush, e.svc.Origin+"/events")
	_, mission := e.redeemedMission()
	rc.fail, rc.retryAfter = []int{http.StatusTooManyRequests}, "7"
	if _, err := e.auth.Revoke(ctx, mission, "human:op", ""); err != nil {
		t.Fatal(err)
	}
	next, err := e.auth.DeliverDue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := claims(t, receive(t, rc))["jti"]
	if d := next.Sub(e.clock.Now()); d != 7*time.Second {
		t.Errorf("retry in %v, want the 7s asked", d)
	}
	e.clock.Advance(7 * time.Second)
	if _, err := e.auth.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if again := claims(t, receive(t, rc))["jti"]; again != first {
		t.Errorf("retry jti %v, want %v", again, first)
	}
}

// X2 at the Authority: a Service whose extensions member is a string, or
// whose events extension has an unknown major or an http:// receiver, is
// a v0.1 Service to the Authority: its redemption and checks work, no SET
// is queued for it, and the ignored extension is logged. An unknown URI is
// kept for whoever knows it and is no reason to log.
func TestEventsBrokenServiceExtensions(t *testing.T) {
	for _, tc := range []struct {
		name, extensions string
		logged           bool
	}{
		{"a string", `"events"`, true},
		{"unknown major", `{"` + pass.ExtEvents + `":{"version":"2.0","delivery_methods":["urn:ietf:rfc:8935"],"endpoints":{"receiver":"https://` + svcHost + `/events"}}}`, true},
		{"http receiver", `{"` + pass.ExtEvents + `":{"version":"1.0","delivery_methods":["urn:ietf:rfc:8935"],"endpoints":{"receiver":"http://` + svcHost + `/events"}}}`, true},
		{"unknown URI only", `{"https://example.com/ext/other":{"version":"1.0"}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := authority.NewMemoryStore()
			e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = store })
			rc := &receiver{got: make(chan string, 1)}
			mux := http.NewServeMux()
			mux.HandleFunc("/agentpass-service.json", func(w http.ResponseWriter, r *http.Request) {
				var doc map[string]json.RawMessage
				b, _ := json.Marshal(e.svc.Configuration())
				_ = json.Unmarshal(b, &doc)
				doc["extensions"] = json.RawMessage(tc.extensions)
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(doc)
			})
			mux.Handle("/events", rc)
			mux.Handle("/", e.svc)
			e.net.Serve(svcHost, mux)

			authz, mission := e.redeemedMission()
			if r, _ := e.check(e.svc, authz); r.status != http.StatusOK {
				t.Fatalf("check: %d %s", r.status, r.body)
			}
			if _, err := e.auth.Revoke(ctx, mission, "human:op", ""); err != nil {
				t.Fatal(err)
			}
			if r, _ := e.check(e.svc, authz); r.status != http.StatusNotFound {
				t.Fatalf("check after Revoke: %d %s, want 404", r.status, r.body)
			}
			now := e.clock.Now()
			if evs, _ := store.ClaimEvents(ctx, "probe", now, now.Add(time.Minute), 10, 10); len(evs) != 0 {
				t.Errorf("%d SETs queued for push", len(evs))
			}
			if evs, _, _ := store.PollEvents(ctx, e.svc.Origin, 10, now); len(evs) != 0 {
				t.Errorf("%d SETs queued for polling", len(evs))
			}
			if got := strings.Contains(e.logs.String(), "agentpass service extensions ignored"); got != tc.logged {
				t.Errorf("ignored extension logged = %v, want %v", got, tc.logged)
			}
		})
	}
}
