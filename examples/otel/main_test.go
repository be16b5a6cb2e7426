package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestFlowRecords runs the example's flow with in-memory readers and checks
// that issuance, validation, redemption and the middleware's check left
// spans and metric points, and that no attribute names a user's address.
func TestFlowRecords(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	status, err := flow(ctx, tp, mp)
	if err != nil {
		t.Fatal(err)
	}
	if status != 200 {
		t.Fatalf("API call status = %d, want 200", status)
	}

	got := map[string]bool{}
	for _, s := range spans.GetSpans() {
		got[s.Name] = true
		checkAttrs(t, "span "+s.Name, s.Attributes)
	}
	for _, name := range []string{
		"agentpass.acquire", "agentpass.issuance", "agentpass.redeem", "agentpass.bearer_token",
		"agentpass.validate", "agentpass.check", "HTTP POST",
	} {
		if !got[name] {
			t.Errorf("no span %q; got %v", name, got)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	points := map[string]int{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					points[m.Name] += int(p.Value)
					checkAttrs(t, "metric "+m.Name, p.Attributes.ToSlice())
				}
			case metricdata.Gauge[int64]:
				points[m.Name] += len(d.DataPoints)
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					points[m.Name] += int(p.Count)
				}
			}
		}
	}
	for _, name := range []string{
		"agentpass.requests", "agentpass.decisions", "agentpass.validation.duration",
		"agentpass.redemption.duration", "agentpass.check_cache.hits", "agentpass.pending",
	} {
		if points[name] == 0 {
			t.Errorf("no point of %q; got %v", name, points)
		}
	}
}

func checkAttrs(t *testing.T, where string, kvs []attribute.KeyValue) {
	t.Helper()
	for _, kv := range kvs {
		if v := kv.Value.String(); strings.Contains(v, "@") {
			t.Errorf("%s: attribute %s = %q names an address", where, kv.Key, v)
		}
	}
}

// TestRun runs the command as a user would, with the stdout exporters.
func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Name":"agentpass.issuance"`, `"Name":"agentpass.requests"`, "redeemed token: 200"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s", want)
		}
	}
}
