package authority

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// TestValidationBodyAllocs (#19 item 2): the validation answer and the
// members it points to are one allocation (before: five), and it carries
// what the authorization says.
func TestValidationBodyAllocs(t *testing.T) {
	az := &Authorization{ID: "authz_1", User: "alex@example.com", AgentID: "agent:x", Type: pass.BearerToken,
		Scope: pass.Scope{"read"}, TaskID: "t", TaskDescription: "d", TaskAttested: true, HarnessID: "h",
		Cnf: json.RawMessage(`{"kty":"OKP"}`), ExpiresAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.FixedZone("x", 3600))}
	if n := testing.AllocsPerRun(100, func() { _ = validationBody(az) }); n != 1 {
		t.Errorf("validationBody: %v allocations, want 1", n)
	}
	out := validationBody(az)
	switch {
	case out.AuthorizationID != "authz_1" || out.User.Email != az.User || out.Agent.ID != az.AgentID || !out.Scope.Has("read"):
		t.Errorf("answer %+v", out)
	case out.Task == nil || *out.Task != (pass.Task{ID: "t", Description: "d", Attested: true}):
		t.Errorf("task %+v", out.Task)
	case out.Harness == nil || out.Harness.ID != "h" || out.Cnf == nil || string(out.Cnf.JWK) != `{"kty":"OKP"}`:
		t.Errorf("harness %+v cnf %+v", out.Harness, out.Cnf)
	case out.AuthorizationExpiresAt == nil || !out.AuthorizationExpiresAt.Equal(az.ExpiresAt) || out.AuthorizationExpiresAt.Location() != time.UTC:
		t.Errorf("expires %v", out.AuthorizationExpiresAt)
	case out.Mission == nil || !reflect.DeepEqual(*out.Mission, pass.MissionInfo{}):
		t.Errorf("mission %+v, want a zero one to fill", out.Mission)
	}
}
