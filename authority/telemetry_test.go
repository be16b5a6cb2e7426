package authority_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// collect returns each int64 sum and gauge point by metric name and
// attribute set.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]map[attribute.Distinct]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[attribute.Distinct]int64{}
	add := func(name string, set attribute.Set, v int64) {
		if out[name] == nil {
			out[name] = map[attribute.Distinct]int64{}
		}
		out[name][set.Equivalent()] += v
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, p.Value)
				}
			}
		}
	}
	return out
}

func telKey(kv ...attribute.KeyValue) attribute.Distinct {
	s := attribute.NewSet(kv...)
	return s.Equivalent()
}

// TestTelemetryPendingAndDecisions (issue 16): the pending gauge follows a
// request from issuance to an operator's decision, which is counted by
// method and outcome, and the issuance request by endpoint and outcome.
func TestTelemetryPendingAndDecisions(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	e := newEnv(t, func(c *authority.Config) {
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	role := attribute.String("agentpass.role", "authority")
	pending := telKey(role)

	_, st := e.issue(e.newHarness().req)
	if st == nil || st.Status != pass.StatusPending {
		t.Fatalf("issuance: %+v, want pending", st)
	}
	got := collect(t, reader)
	if n := got["agentpass.pending"][pending]; n != 1 {
		t.Fatalf("agentpass.pending = %d, want 1 (%v)", n, got)
	}
	issued := telKey(role, attribute.String("agentpass.endpoint", "issuance"), attribute.String("agentpass.outcome", "ok"))
	if n := got["agentpass.requests"][issued]; n != 1 {
		t.Fatalf("agentpass.requests{issuance, ok} = %d, want 1 (%v)", n, got["agentpass.requests"])
	}

	if _, err := e.auth.Decide(context.Background(), st.Mission.ID, authority.Decision{Outcome: authority.Approve}); err != nil {
		t.Fatal(err)
	}
	got = collect(t, reader)
	if n := got["agentpass.pending"][pending]; n != 0 {
		t.Errorf("agentpass.pending after the decision = %d, want 0", n)
	}
	decided := telKey(role, attribute.String("agentpass.method", "operator"), attribute.String("agentpass.outcome", "approved"))
	if n := got["agentpass.decisions"][decided]; n != 1 {
		t.Errorf("agentpass.decisions{operator, approved} = %d, want 1 (%v)", n, got["agentpass.decisions"])
	}
}
