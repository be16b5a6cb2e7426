package pass_test

import (
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/spectest"
	"github.com/agentpass-go/agentpass/pass"
)

// R2/X1 (mission.md §1.8, §5.8): documents that carry the mission member
// still validate against the v0.1 schemas.
func TestMissionMembersValidateAgainstSchemas(t *testing.T) {
	spectest.Dir(t)
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	m := &pass.MissionInfo{ID: "msn_4vQ9sT2kP8xL1mN6", State: pass.MissionActive, Version: 4, Stage: "discover",
		Stages: []pass.Stage{{Name: "discover", Scope: pass.Scope{"tickets:read"}, Gate: "auto"}}, Ceiling: pass.Scope{"tickets:read"},
		Parent: "msn_parent", Act: &pass.Actor{Sub: "child", MissionID: "msn_4vQ9sT2kP8xL1mN6", Act: &pass.Actor{Sub: "parent", MissionID: "msn_parent"}}}
	docs := []struct {
		schema, sub string
		doc         pass.Document
	}{
		{"issuance-status.schema.json", "", &pass.IssuanceStatus{ID: "r1", Status: pass.StatusPending, Mission: &pass.MissionInfo{ID: m.ID, State: pass.MissionPending, Version: 1}}},
		{"authority-validate.schema.json", "response", &pass.ValidationResponse{AuthorizationID: "az", User: pass.User{Email: "alex@example.com"}, Agent: pass.Agent{ID: "h1"},
			Scope: pass.Scope{"tickets:read"}, Type: pass.BearerToken, Mission: m,
			Harness: &pass.HarnessRef{ID: "h1", Extensions: pass.HarnessExtensions{pass.ExtHolderBinding}}}},
		{"authority-authorization-check.schema.json", "response", &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}, AuthorizationExpiresAt: &now,
			Mission: &pass.MissionInfo{ID: m.ID, State: pass.MissionActive, Version: 5, Stage: "discover"}}},
		{"error-response.schema.json", "", &pass.ErrorResponse{Error: pass.ErrorBody{Code: pass.CodeMissionSuspended, Message: "suspended"},
			Mission: &pass.MissionInfo{ID: m.ID, State: pass.MissionSuspended, Version: 7}}},
	}
	for _, d := range docs {
		if err := d.doc.Validate(); err != nil {
			t.Fatalf("%s: our own document does not pass Validate: %v", d.schema, err)
		}
		validateAgainst(t, d.schema, d.sub, d.doc)
	}
}

// deepAct is an actor chain n deep.
func deepAct(n int) string {
	return strings.Repeat(`{"sub":"a","act":`, n-1) + `{"sub":"a"}` + strings.Repeat("}", n-1)
}

func TestMissionMemberChecked(t *testing.T) {
	for _, body := range []string{
		`{"id":"r","status":"pending","mission":{"id":"nope","state":"pending","version":1}}`,
		`{"id":"r","status":"pending","mission":{"id":"msn_x","state":"dormant","version":1}}`,
		`{"id":"r","status":"pending","mission":{"id":"msn_x","state":"pending","version":0}}`,
		`{"id":"r","status":"pending","mission":{"id":"msn_` + strings.Repeat("x", 200) + `","state":"pending","version":1}}`,
		// The delegation chain (act): a sub, well-formed mission ids, the
		// parent second, and a bounded length.
		`{"id":"r","status":"pending","mission":{"id":"msn_x","state":"pending","version":1,"parent":"p1"}}`,
		`{"id":"r","status":"pending","mission":{"id":"msn_x","state":"pending","version":1,"act":{"sub":""}}}`,
		`{"id":"r","status":"pending","mission":{"id":"msn_x","state":"pending","version":1,"act":{"sub":"c","mission_id":"x"}}}`,
		`{"id":"r","status":"pending","mission":{"id":"msn_x","state":"pending","version":1,"parent":"msn_p",
			"act":{"sub":"c","mission_id":"msn_x","act":{"sub":"p","mission_id":"msn_other"}}}}`,
		`{"id":"r","status":"pending","mission":{"id":"msn_x","state":"pending","version":1,"act":` + deepAct(40) + `}}`,
	} {
		var s pass.IssuanceStatus
		if err := pass.Decode([]byte(body), &s); err == nil {
			t.Errorf("accepted %s", body)
		}
	}
	var s pass.IssuanceStatus
	if err := pass.Decode([]byte(`{"id":"r","status":"pending","mission":{"id":"msn_x","state":"pending","version":1}}`), &s); err != nil || s.Mission.ID != "msn_x" {
		t.Errorf("valid mission member refused: %v", err)
	}
	if err := pass.Decode([]byte(`{"id":"r","status":"pending","mission":{"id":"msn_x","state":"pending","version":1,"act":`+deepAct(33)+`}}`), &s); err != nil {
		t.Errorf("a chain as deep as the wire allows refused: %v", err)
	}
	for state, terminal := range map[pass.MissionState]bool{pass.MissionPending: false, pass.MissionActive: false, pass.MissionSuspended: false,
		pass.MissionCompleted: true, pass.MissionRevoked: true, pass.MissionExpired: true} {
		if state.Terminal() != terminal || !state.Valid() {
			t.Errorf("%s: Terminal %v Valid %v", state, state.Terminal(), state.Valid())
		}
	}
}

func TestMissionRequestsValidate(t *testing.T) {
	bad := []pass.Document{
		&pass.MissionReadRequest{},
		&pass.MissionReadRequest{AuthorizationID: "az", MissionID: "msn_x"},
		&pass.MissionReadRequest{MissionID: "x"},
		&pass.MissionCompleteRequest{MissionID: "msn_x", Outcome: "done"},
		&pass.MissionCompleteRequest{MissionID: "msn_x", Outcome: pass.OutcomeSucceeded, Reason: strings.Repeat("r", 1025)},
		&pass.MissionReportRequest{AuthorizationID: "az"},
		&pass.MissionReportRequest{AuthorizationID: "az", Observations: make([]pass.Observation, 51)},
		&pass.MissionReportRequest{AuthorizationID: "az", Observations: []pass.Observation{{Kind: "peeked", Count: 1}}},
		&pass.MissionReportRequest{AuthorizationID: "az", Observations: []pass.Observation{{Kind: pass.ObservationScopeDenied, Count: 0}}},
	}
	for _, d := range bad {
		if err := d.Validate(); err == nil {
			t.Errorf("%T %+v validated", d, d)
		}
	}
	now := time.Now()
	good := []pass.Document{
		&pass.MissionReadRequest{AuthorizationID: "az"},
		&pass.MissionReadRequest{MissionID: "msn_x"},
		&pass.MissionCompleteRequest{MissionID: "msn_x", Outcome: pass.OutcomeAbandoned},
		&pass.MissionReportRequest{AuthorizationID: "az", Observations: []pass.Observation{{Kind: pass.ObservationStageScopeExceeded, Scope: "a", Count: 3, FirstAt: now, LastAt: now}}},
	}
	for _, d := range good {
		if err := d.Validate(); err != nil {
			t.Errorf("%T: %v", d, err)
		}
	}
}

func FuzzMissionReadRequest(f *testing.F) {
	fuzzDocument[pass.MissionReadRequest](f, `{"mission_id":"msn_4vQ9sT2kP8xL1mN6"}`, `{"authorization_id":"authz_7HkQ2"}`)
}

func FuzzMissionCompleteRequest(f *testing.F) {
	fuzzDocument[pass.MissionCompleteRequest](f, `{"mission_id":"msn_4vQ9sT2kP8xL1mN6","outcome":"succeeded","reason":"all duplicates answered"}`)
}

func FuzzMissionReportRequest(f *testing.F) {
	fuzzDocument[pass.MissionReportRequest](f, `{"authorization_id":"authz_7HkQ2","observations":[{"kind":"stage_scope_exceeded","scope":"tickets:comment","stage":"discover","count":3,"first_at":"2026-11-23T09:05:00Z","last_at":"2026-11-23T09:05:09Z"}]}`)
}

func FuzzMissionResponse(f *testing.F) {
	fuzzDocument[pass.MissionResponse](f, `{"mission":{"id":"msn_4vQ9sT2kP8xL1mN6","authority":"https://idp.corp.example","state":"active","version":4,"created_at":"2026-11-23T09:00:00Z","ended":null,"service":"https://api.example.com","user":{"email":"alex@corp.example"},"agent":{"id":"claude-code"},"harness":{"id":"claude-code","tier":"attested"},"task":{"id":"t","attested":true},"authority_model":{"ceiling":["a"],"scope":["a"],"pending_transition":null},"authorizations":[],"history":{"head":"sha256:00","count":1}}}`)
}
