package authority_test

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/internal/spectest"
	"github.com/agentpass-go/agentpass/pass"
)

// X1: with every extension on at once (mission record, compilation,
// stages, delegation, events, holder binding) the Authority's v0.1
// documents still validate against the v0.1 schemas: its configuration,
// the issuance status, and the validation and check answers of a root
// mission and of its sub-agent.
func TestAllExtensionsValidateAgainstV01(t *testing.T) {
	spectest.Dir(t)
	tp, err := authority.NewTemplates("x1", []authority.Template{{ID: "triage", Version: "1", Any: []string{"ticket"},
		Scopes: []authority.ScopeSelector{{Name: "tickets:read", Why: "reads the tickets"}}}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, approveDepth(2), func(c *authority.Config) {
		c.Compiler = tp
		c.Effects = authority.EffectRules{":read": authority.EffectRead}
	})
	// The Service advertises everything it can, events by push included.
	x := pass.Extensions{}
	for _, uri := range []string{pass.ExtMission, pass.ExtStages, pass.ExtDelegation} {
		if x, err = x.With(uri, pass.Extension{Version: "1.0"}); err != nil {
			t.Fatal(err)
		}
	}
	ev := pass.Extension{Version: "1.0", Endpoints: map[string]string{"receiver": e.svc.Origin + "/events"}}
	ev, _ = ev.WithMember("delivery_methods", []string{pass.DeliveryPush})
	ev, _ = ev.WithMember("events_accepted", secevent.Types())
	if x, err = x.With(pass.ExtEvents, ev); err != nil {
		t.Fatal(err)
	}
	e.svc.SetExtensions(x)

	r := e.do(http.MethodGet, e.auth.ConfigurationURL(), nil, nil)
	validateSchema(t, "authority-configuration.schema.json", "", r.body)
	var cfg pass.AuthorityConfiguration
	if err := pass.Decode(r.body, &cfg); err != nil {
		t.Fatal(err)
	}
	want := []string{pass.ExtCompile, pass.ExtDelegation, pass.ExtEvents, pass.ExtHolderBinding, pass.ExtMission, pass.ExtStages}
	if diff := cmp.Diff(want, cfg.Extensions.URIs()); diff != "" {
		t.Errorf("advertised extensions (-want +got):\n%s", diff)
	}

	h := e.newHarness()
	h.req.Harness.Extensions = pass.HarnessExtensions{pass.ExtMission, pass.ExtStages, pass.ExtDelegation}
	h.req.Stages = []pass.Stage{{Name: "discover", Scope: pass.Scope{"tickets:read"}}}
	ir, st := e.issue(h.req)
	validateSchema(t, "issuance-status.schema.json", "", ir.body)
	if st == nil || st.AgentPass == nil {
		t.Fatalf("issuance: %d %s", ir.status, ir.body)
	}
	vr, v := e.validate(e.svc, st.AgentPass.Value)
	if v == nil || v.Mission == nil {
		t.Fatalf("validation: %d %s", vr.status, vr.body)
	}
	validateSchema(t, "authority-validate.schema.json", "response", vr.body)
	cr, _ := e.check(e.svc, v.AuthorizationID)
	validateSchema(t, "authority-authorization-check.schema.json", "response", cr.body)

	c := e.newSub(harnessID, "sub")
	child := e.mustDelegate(h.key, harnessID, e.delegation(st.Mission.ID, c, "tickets:read"))
	cvr, cv := e.validate(e.svc, child.AgentPass.Value)
	if cv == nil || cv.Mission == nil || cv.Mission.Act == nil {
		t.Fatalf("child validation: %d %s", cvr.status, cvr.body)
	}
	validateSchema(t, "authority-validate.schema.json", "response", cvr.body)
	ccr, _ := e.check(e.svc, cv.AuthorizationID)
	validateSchema(t, "authority-authorization-check.schema.json", "response", ccr.body)
}
