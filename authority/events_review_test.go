package authority_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// waitSignal is a MemoryStore that says when a long poll starts waiting.
type waitSignal struct {
	*authority.MemoryStore
	waiting chan struct{}
}

func (s waitSignal) WaitEvents(ctx context.Context, after int64) (int64, error) {
	if after >= 0 {
		s.waiting <- struct{}{}
	}
	return s.MemoryStore.WaitEvents(ctx, after)
}

// Review O6: one Service holds at most two long polls at once; its third
// is answered at once, and another Service's long poll still waits.
func TestReviewLongPollsPerService(t *testing.T) {
	store := waitSignal{authority.NewMemoryStore(), make(chan struct{}, 16)}
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = store })
	other := deploy.NewTestService(e.net, otherHost, e.auth.ConfigurationURL(), e.clock.Now)
	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		status int
		out    pass.PollResponse
		err    error
	}
	poll := func(svc *deploy.TestService) chan answer {
		done := make(chan answer, 1)
		go func() {
			b, _ := json.Marshal(pass.PollRequest{})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/events/poll", bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+svc.Assertion(authID))
			var a answer
			resp, err := e.net.Client().Do(req)
			if a.err = err; err == nil {
				a.status = resp.StatusCode
				a.err = json.NewDecoder(resp.Body).Decode(&a.out)
				resp.Body.Close()
			}
			done <- a
		}()
		return done
	}
	var pending []chan answer
	t.Cleanup(func() {
		cancel()
		for _, p := range pending {
			<-p
		}
	})
	for i := range 2 {
		p := poll(e.svc)
		pending = append(pending, p)
		select {
		case <-store.waiting:
		case a := <-p:
			t.Fatalf("long poll %d answered at once: %d %v", i+1, a.status, a.err)
		}
	}
	select {
	case a := <-poll(e.svc):
		if a.err != nil || a.status != http.StatusOK || len(a.out.Sets) != 0 {
			t.Errorf("third long poll: %d %+v %v, want an empty answer", a.status, a.out, a.err)
		}
	case <-store.waiting:
		t.Fatal("a Service's third long poll waits")
	}
	p := poll(other)
	pending = append(pending, p)
	select {
	case <-store.waiting:
	case a := <-p:
		t.Fatalf("another Service's long poll answered at once: %d %v", a.status, a.err)
	}
}

// Review O2: when the outbox of a Service is full of SETs that nothing
// superseded, a new resumption is refused and logged (with a count, never
// the SET), every queued SET stays, and a suspension is still queued.
func TestReviewOutboxFullRefusesAndLogs(t *testing.T) {
	store := authority.NewMemoryStore()
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = store })
	withEvents(e, e.svc, pass.DeliveryPoll, "")
	_, mission := e.redeemedMission() // records the receiver
	now := e.clock.Now()
	// Fillers, each with one SET that is not Keep (unsigned: only the
	// store sees it).
	fill := func(ev authority.MissionEvent) (*authority.OutboxEvent, error) {
		return &authority.OutboxEvent{JTI: "fill-" + ev.Mission.MissionID, Service: ev.Authorization.Service, Subject: ev.Authorization.ID,
			SET: "fill", CreatedAt: now, NextAt: now}, nil
	}
	for i := range authority.MaxOutboxPerService {
		id := fmt.Sprintf("fill%d", i)
		r := authoritytest.NewRequest(id)
		r.Service, r.DestinationURL, r.PassHash = e.svc.Origin, e.svc.Origin+"/inbox", "hash-"+id
		r.CreatedAt, r.ExpiresAt = now, now.Add(10*time.Minute)
		d := authoritytest.Approval("tickets:read")
		d.DecidedAt, d.PassExpiresAt, d.AuthorizationExpiresAt = now, now.Add(5*time.Minute), now.Add(30*time.Minute)
		r.Status, r.Decision = pass.StatusApproved, &d
		if err := store.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := store.ConsumePass(ctx, r.PassHash, e.svc.Origin, "authz_"+id, now); err != nil {
			t.Fatal(err)
		}
		c := authority.MissionChange{From: []pass.MissionState{pass.MissionActive}, To: pass.MissionSuspended, By: "human:op", Events: fill}
		if _, err := store.TransitionMission(ctx, r.MissionID, c, now); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(e.logs.String(), "outbox full") {
		t.Fatal("refused below the bound")
	}
	if _, err := e.auth.Suspend(ctx, mission, "human:op", ""); err != nil {
		t.Fatal(err)
	}
	rec, err := e.auth.Resume(ctx, mission, "human:op")
	if err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "outbox full") || !strings.Contains(logs, `"refused_total":1`) {
		t.Errorf("refusal not logged with its count: %s", logs)
	}
	if strings.Contains(logs, "eyJ") {
		t.Error("a SET was logged")
	}
	fills, real := 0, 0
	for more := true; more; {
		got := e.pollEvents(e.svc, pass.PollRequest{ReturnImmediately: true, MaxEvents: intp(pass.MaxPollEvents)})
		var acks []string
		for jti, raw := range got.Sets {
			if raw == "fill" {
				fills++
			} else if set := e.verifySET(raw); set.Event.Mission.ID == mission {
				real++
				if set.Event.Mission.Version == rec.Version {
					t.Error("the refused resumption was queued")
				}
			}
			acks = append(acks, jti)
		}
		e.pollEvents(e.svc, pass.PollRequest{ReturnImmediately: true, Ack: acks, MaxEvents: intp(0)})
		more = got.MoreAvailable
	}
	if fills != authority.MaxOutboxPerService || real != 1 {
		t.Errorf("queued %d fillers and %d of the mission, want %d and 1 (the suspension)", fills, real, authority.MaxOutboxPerService)
	}
}

func intp(n int) *int { return &n }
