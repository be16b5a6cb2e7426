package authority

import (
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/pass"
)

// Which SET each change becomes, with and without the Service accepting
// our own event types (§5.2's table): a completion or suspension falls
// back to session-revoked, a resumption to nothing, an expiry is never
// sent, a narrowing is a token-claims-change with a space-delimited
// scope, and a stage move is a mission-stage-changed (S1/E5) only for a
// Service that accepts it; a descendant hears of its ancestor's stage move
// or narrowing as a token-claims-change with its effective scope (O9, A2).
func TestEventMapping(t *testing.T) {
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a, err := New(Config{Identifier: "https://idp.example", TrustMode: pass.TrustFederated, Keys: keys, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	all := pass.ServiceEvents{DeliveryMethod: pass.DeliveryPoll, EventsAccepted: secevent.Types()}
	caep := pass.ServiceEvents{DeliveryMethod: pass.DeliveryPoll, EventsAccepted: []string{secevent.SessionRevoked, secevent.TokenClaimsChange}}
	act, sus := pass.MissionActive, pass.MissionSuspended
	mission := func(id string, state pass.MissionState, scope ...string) *Request {
		return &Request{MissionID: id, State: state, Version: 5, HistoryCount: 9, Scope: scope}
	}
	staged := func(id, stage string, scope ...string) *Request {
		r := mission(id, pass.MissionActive, scope...)
		r.Stage = stage
		return r
	}
	tests := []struct {
		name           string
		change         MissionChange
		root, m        *Request
		prior          pass.MissionState
		rcv            pass.ServiceEvents
		want           string // event type, "" for none
		wantState      string
		terminal, keep bool
	}{
		{"revoked", MissionChange{To: pass.MissionRevoked}, nil, mission("msn_r", pass.MissionRevoked), act, caep, secevent.SessionRevoked, "revoked", true, true},
		{"completed", MissionChange{To: pass.MissionCompleted}, nil, mission("msn_r", pass.MissionCompleted), act, all, secevent.MissionCompleted, "completed", true, true},
		{"completed, CAEP only", MissionChange{To: pass.MissionCompleted}, nil, mission("msn_r", pass.MissionCompleted), act, caep, secevent.SessionRevoked, "completed", true, true},
		{"suspended", MissionChange{To: sus}, nil, mission("msn_r", sus), act, all, secevent.MissionSuspended, "suspended", false, true},
		{"suspended, CAEP only", MissionChange{To: sus}, nil, mission("msn_r", sus), act, caep, secevent.SessionRevoked, "suspended", true, true},
		{"resumed", MissionChange{From: []pass.MissionState{sus}, To: act}, nil, mission("msn_r", act), sus, all, secevent.MissionResumed, "active", false, false},
		{"resumed, CAEP only", MissionChange{From: []pass.MissionState{sus}, To: act}, nil, mission("msn_r", act), sus, caep, "", "", false, false},
		{"expired", MissionChange{To: pass.MissionExpired}, nil, mission("msn_r", pass.MissionExpired), act, all, "", "", false, false},
		{"narrowed", MissionChange{Scope: pass.Scope{"a:read"}}, nil, mission("msn_r", act, "a:read", "b:read"), act, caep, secevent.TokenClaimsChange, "active", false, false},
		{"stage changed", MissionChange{From: []pass.MissionState{act}, Stage: &StageMove{Op: StageApply, To: "respond"}}, nil, staged("msn_r", "respond", "a:read", "a:write"), act, all, secevent.MissionStageChanged, "active", false, false},
		{"stage changed, CAEP only", MissionChange{From: []pass.MissionState{act}, Stage: &StageMove{Op: StageApply, To: "respond"}}, nil, staged("msn_r", "respond", "a:read", "a:write"), act, caep, "", "", false, false},
		{"descendant of a staged root (O9)", MissionChange{From: []pass.MissionState{act}, Stage: &StageMove{Op: StageApply, To: "discover"}}, staged("msn_root", "discover", "a:read"), mission("msn_c", act, "a:read", "b:read"), act, caep, secevent.TokenClaimsChange, "active", false, false},
		{"descendant of a narrowed root", MissionChange{Scope: pass.Scope{"a:read"}}, mission("msn_root", act, "a:read"), mission("msn_c", act, "a:read", "b:read"), act, caep, secevent.TokenClaimsChange, "active", false, false},
		{"descendant of a suspended root", MissionChange{To: sus}, mission("msn_root", sus), mission("msn_c", act), act, all, secevent.MissionSuspended, "suspended", false, true},
		{"descendant of a resumed root", MissionChange{From: []pass.MissionState{sus}, To: act}, mission("msn_root", act), mission("msn_c", act), act, all, secevent.MissionResumed, "active", false, false},
		{"descendant ended by cascade", MissionChange{To: pass.MissionCompleted}, mission("msn_root", pass.MissionCompleted), mission("msn_c", pass.MissionRevoked), act, all, secevent.SessionRevoked, "revoked", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tt.root
			if root == nil {
				root = tt.m
			}
			az := &Authorization{ID: "authz_1", Service: "https://svc.example"}
			var anc []*Request
			if tt.root != nil {
				// The root as it was: the event bounds the descendant by
				// the root after the change.
				anc = []*Request{mission(root.MissionID, act, "a:read", "b:read")}
			}
			ev, err := a.eventFor(MissionEvent{Change: tt.change, Root: root, Mission: tt.m, Prior: tt.prior, Authorization: az, Receiver: tt.rcv, Ancestors: anc})
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if ev != nil {
					t.Fatalf("event queued for %s", tt.name)
				}
				return
			}
			if ev == nil {
				t.Fatal("no event")
			}
			tok, err := secevent.Parse(ev.SET)
			if err != nil {
				t.Fatal(err)
			}
			k := keys.Current().Public()
			set, err := tok.VerifyWith(&k, "https://idp.example", "https://svc.example")
			if err != nil {
				t.Fatal(err)
			}
			if set.Event.Type != tt.want || set.Event.Mission.State != tt.wantState || set.Event.Mission.ID != tt.m.MissionID {
				t.Errorf("event %s state %s mission %s, want %s %s %s", set.Event.Type, set.Event.Mission.State, set.Event.Mission.ID, tt.want, tt.wantState, tt.m.MissionID)
			}
			if set.Txn != root.MissionID+":9" || set.Subject != "authz_1" || ev.JTI != set.JTI || ev.Terminal != tt.terminal || ev.Keep != tt.keep {
				t.Errorf("txn %s subject %s terminal %v keep %v", set.Txn, set.Subject, ev.Terminal, ev.Keep)
			}
			// S1/E5: a stage move names the stage and carries its whole
			// scope, space-delimited, so the receiver can tell narrower
			// from wider.
			if tt.want == secevent.MissionStageChanged && (set.Event.Scope != "a:read a:write" || set.Event.Mission.Stage != "respond" || set.Event.Mission.Version != 5) {
				t.Errorf("stage event scope %q stage %q version %d", set.Event.Scope, set.Event.Mission.Stage, set.Event.Mission.Version)
			}
			// A descendant's claims carry its effective scope: its own
			// within the root's after the change (O9, A2).
			wantClaims := "a:read b:read"
			if tt.root != nil {
				wantClaims = "a:read"
			}
			if tt.want == secevent.TokenClaimsChange && (set.Event.Claims == nil || set.Event.Claims.Scope != wantClaims) {
				t.Errorf("claims %+v, want scope %q", set.Event.Claims, wantClaims)
			}
		})
	}
}
