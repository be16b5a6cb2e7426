package authority

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
)

// planFor: the Harness's plan first, the proposed one as the fallback;
// stages narrowed to what the Service offers; gates raised to their
// floors (logged); collapsed into one stage when either side cannot stage.
func TestPlanFor(t *testing.T) {
	var logs bytes.Buffer
	a := &Authority{log: slog.New(slog.NewTextHandler(&logs, nil)),
		effects: EffectRules{":read": EffectRead, ":write": EffectWrite}}
	req := &Request{MissionID: "msn_t", AvailableScope: pass.Scope{"t:read", "t:write", "t:delete"}}
	requested := []pass.Stage{
		{Name: "look", Scope: pass.Scope{"t:read", "x:read"}},
		{Name: "edit", Scope: pass.Scope{"t:read", "t:write"}, Gate: pass.GateAuto},
		{Name: "gone", Scope: pass.Scope{"x:write"}},
		{Name: "purge", Scope: pass.Scope{"t:read", "t:delete"}, Gate: pass.GatePolicy},
	}
	proposed := []pass.Stage{{Name: "proposed", Scope: pass.Scope{"t:read"}}}
	for _, tc := range []struct {
		name                string
		requested, proposed []pass.Stage
		svc, harness        bool
		want                []pass.Stage
	}{
		{"requested wins", requested, proposed, true, true, []pass.Stage{
			{Name: "look", Scope: pass.Scope{"t:read"}, Gate: pass.GateAuto},
			{Name: "edit", Scope: pass.Scope{"t:read", "t:write"}, Gate: pass.GatePolicy},
			{Name: "purge", Scope: pass.Scope{"t:read", "t:delete"}, Gate: pass.GateHuman},
		}},
		{"proposed as the fallback", nil, proposed, true, true, []pass.Stage{{Name: "proposed", Scope: pass.Scope{"t:read"}, Gate: pass.GateAuto}}},
		{"none", nil, nil, true, true, nil},
		{"nothing offered", []pass.Stage{{Name: "x", Scope: pass.Scope{"x:read"}}}, nil, true, true, nil},
		{"Service without stages", requested, nil, false, true, []pass.Stage{
			{Name: "main", Scope: pass.Scope{"t:read", "t:write", "t:delete"}, Gate: pass.GateHuman}}},
		{"Harness without stages", requested[:2], nil, true, false, []pass.Stage{
			{Name: "main", Scope: pass.Scope{"t:read", "t:write"}, Gate: pass.GatePolicy}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := a.planFor(context.Background(), req, tc.requested, tc.proposed, tc.svc, tc.harness)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("plan (-want +got):\n%s", d)
			}
		})
	}
	if !bytes.Contains(logs.Bytes(), []byte("stage=edit declared=auto gate=policy")) || !bytes.Contains(logs.Bytes(), []byte("stage=purge declared=policy gate=human")) {
		t.Errorf("raised gates not logged:\n%s", logs.String())
	}
}
