package pass_test

import (
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

func TestValidateStages(t *testing.T) {
	st := func(name string, gate string, scope ...string) pass.Stage {
		return pass.Stage{Name: name, Scope: scope, Gate: gate}
	}
	nine := make([]pass.Stage, 9)
	for i := range nine {
		nine[i] = st(string(rune('a'+i)), "", "x")
	}
	for _, tc := range []struct {
		name   string
		stages []pass.Stage
		ok     bool
	}{
		{"two stages", []pass.Stage{st("discover", pass.GateAuto, "tickets:read"), st("respond", pass.GateHuman, "tickets:read", "tickets:comment")}, true},
		{"no gate", []pass.Stage{st("only", "", "a")}, true},
		{"empty plan", nil, false},
		{"nine stages", nine, false},
		{"duplicate names", []pass.Stage{st("a", "", "x"), st("a", "", "y")}, false},
		{"upper case name", []pass.Stage{st("Discover", "", "x")}, false},
		{"long name", []pass.Stage{st(strings.Repeat("a", 33), "", "x")}, false},
		{"empty scope", []pass.Stage{st("a", "")}, false},
		{"wildcard", []pass.Stage{st("a", "", "*")}, false},
		{"empty scope value", []pass.Stage{st("a", "", "")}, false},
		{"unknown gate", []pass.Stage{st("a", "sometimes", "x")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := pass.ValidateStages(tc.stages); (err == nil) != tc.ok {
				t.Errorf("ValidateStages = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestMissionStageRequestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    pass.MissionStageRequest
		ok   bool
	}{
		{"valid", pass.MissionStageRequest{MissionID: "msn_x", To: "respond", ExpectedVersion: 4, Reason: "12 duplicates"}, true},
		{"not a mission id", pass.MissionStageRequest{MissionID: "x", To: "respond"}, false},
		{"bad stage name", pass.MissionStageRequest{MissionID: "msn_x", To: "Re spond"}, false},
		{"negative version", pass.MissionStageRequest{MissionID: "msn_x", To: "a", ExpectedVersion: -1}, false},
		{"long reason", pass.MissionStageRequest{MissionID: "msn_x", To: "a", Reason: strings.Repeat("r", 1025)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.r.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func FuzzMissionStageRequest(f *testing.F) {
	fuzzDocument[pass.MissionStageRequest](f, `{"mission_id":"msn_4vQ9sT2kP8xL1mN6","to":"respond","expected_version":4,"reason":"12 duplicates found; replying to each"}`)
}

func FuzzIssuanceRequestStages(f *testing.F) {
	fuzzDocument[pass.IssuanceRequest](f, `{"type":"bearer_token","service":{"origin":"https://api.example.com"},"user":{"email":"alex@corp.example"},"harness":{"id":"claude-code"},"task":{"id":"t","description":"Triage"},"stages":[{"name":"discover","scope":["tickets:read"]},{"name":"respond","scope":["tickets:read","tickets:comment"],"gate":"human"}]}`)
}
