package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func sum(t *testing.T, r *sdkmetric.ManualReader, name string) (int64, []attribute.Set) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	var sets []attribute.Set
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, p := range d.DataPoints {
					n += p.Value
					sets = append(sets, p.Attributes)
				}
			}
		}
	}
	return n, sets
}

// TestNoProviderNoAllocation: with the no-op provider and with otel's
// global before an SDK is installed, the calls on the hot paths allocate
// nothing, so an uninstrumented deployment pays nothing.
func TestNoProviderNoAllocation(t *testing.T) {
	for _, tt := range []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"noop", noop.NewTracerProvider()},
		{"idle global", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tel, err := New("service", tt.tp, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			allocs := testing.AllocsPerRun(100, func() {
				ctx2, span := tel.Start(ctx, "agentpass.check", trace.SpanKindInternal)
				Annotate(ctx2, "a@example.com", "agent", "task", "https://authority", "az_1")
				End(span, OK)
				tel.Request(ctx2, "middleware", OK)
				tel.CheckCache(ctx2, true)
				tel.Validation(ctx2, time.Now(), OK)
			})
			if allocs != 0 {
				t.Errorf("allocations per call = %v, want 0", allocs)
			}
		})
	}
}

// TestQuiet: the middleware skips its span and outcome only when neither
// a span nor a request count would record: a provider of either side
// that records makes it speak.
func TestQuiet(t *testing.T) {
	recording := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	counting := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	for _, tt := range []struct {
		name  string
		tp    trace.TracerProvider
		mp    *sdkmetric.MeterProvider
		quiet bool
	}{
		{"idle globals", nil, nil, true},
		{"noop tracer", noop.NewTracerProvider(), nil, true},
		{"tracer", recording, nil, false},
		{"meter", noop.NewTracerProvider(), counting, false},
		// The check cache counts even when requests are not counted.
		{"meter without requests", noop.NewTracerProvider(), sdkmetric.NewMeterProvider(
			sdkmetric.WithReader(sdkmetric.NewManualReader()),
			sdkmetric.WithView(sdkmetric.NewView(sdkmetric.Instrument{Name: "agentpass.requests"},
				sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}}))), false},
		{"meter dropping both", noop.NewTracerProvider(), sdkmetric.NewMeterProvider(
			sdkmetric.WithReader(sdkmetric.NewManualReader()),
			sdkmetric.WithView(sdkmetric.NewView(sdkmetric.Instrument{Name: "agentpass.*"},
				sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}}))), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mp metric.MeterProvider
			if tt.mp != nil {
				mp = tt.mp
			}
			tel, err := New("service", tt.tp, mp)
			if err != nil {
				t.Fatal(err)
			}
			if got := tel.Quiet(context.Background()); got != tt.quiet {
				t.Errorf("Quiet() = %v, want %v", got, tt.quiet)
			}
		})
	}
	if !(*T)(nil).Quiet(context.Background()) {
		t.Error("a nil T is not quiet")
	}
}

// TestQuietAfterGlobalInstall: a T made on otel's idle global meter
// provider stops being quiet once the application installs an SDK there,
// for the check cache's counters too. It runs in a child process, as it
// changes otel's globals for good.
func TestQuietAfterGlobalInstall(t *testing.T) {
	if os.Getenv("TELEMETRY_GLOBAL_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestQuietAfterGlobalInstall$", "-test.v")
		cmd.Env = append(os.Environ(), "TELEMETRY_GLOBAL_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestQuietAfterGlobalInstall") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	tel, err := New("service", noop.NewTracerProvider(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if !tel.Quiet(ctx) {
		t.Fatal("quiet before an SDK is installed: got false")
	}
	r := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r),
		sdkmetric.WithView(sdkmetric.NewView(sdkmetric.Instrument{Name: "agentpass.requests"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}}))))
	if tel.Quiet(ctx) {
		t.Fatal("quiet with the check cache counted by the installed SDK")
	}
	tel.CheckCache(ctx, true)
	if n, _ := sum(t, r, "agentpass.check_cache.hits"); n != 1 {
		t.Errorf("check cache hits = %d, want 1", n)
	}
}

// TestNilSafe: a role built without New (its zero value) records nothing
// and does not panic.
func TestNilSafe(t *testing.T) {
	var tel *T
	ctx, span := tel.Start(context.Background(), "x", trace.SpanKindInternal)
	End(span, Failed)
	tel.Request(ctx, "e", OK)
	tel.Decision(ctx, "policy", OK)
	tel.Validation(ctx, time.Now(), OK)
	tel.Redemption(ctx, time.Now(), "e", OK)
	tel.CheckCache(ctx, false)
	tel.RateLimited(ctx, "e")
	if err := tel.Pending(func(context.Context) (int64, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
	if span.IsRecording() {
		t.Fatal("a nil T recorded a span")
	}
}

// TestHandler: an endpoint's span and request count carry its outcome from
// the status it answered, and the audit attributes name a user by domain
// and an authorization by hash only.
func TestHandler(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	tel, err := New("authority", tp, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	h := tel.Handler("validate", ValidationLatency, func(w http.ResponseWriter, r *http.Request) {
		Annotate(r.Context(), "Alex@Corp.Example", "agent-1", "task-1", "https://idp.example", "az_secretish")
		w.WriteHeader(http.StatusConflict)
	})
	h(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/validate", nil))

	got := spans.GetSpans()
	if len(got) != 1 || got[0].Name != "agentpass.validate" {
		t.Fatalf("spans = %v, want one agentpass.validate", got)
	}
	attrs := attribute.NewSet(got[0].Attributes...)
	for k, want := range map[attribute.Key]string{
		KeyOutcome: Rejected, KeyUserDomain: "corp.example", KeyAgent: "agent-1", KeyTaskID: "task-1", KeyRole: "authority",
	} {
		if v, _ := attrs.Value(k); v.AsString() != want {
			t.Errorf("%s = %q, want %q", k, v.AsString(), want)
		}
	}
	if v, _ := attrs.Value(KeyAuthorization); v.AsString() == "" || strings.Contains(v.AsString(), "az_") {
		t.Errorf("authorization attribute = %q, want a hash", v.AsString())
	}
	for _, kv := range got[0].Attributes {
		if strings.Contains(kv.Value.String(), "@") {
			t.Errorf("attribute %s = %q names an address", kv.Key, kv.Value.String())
		}
	}
	n, sets := sum(t, reader, "agentpass.requests")
	if n != 1 {
		t.Fatalf("agentpass.requests = %d, want 1", n)
	}
	if v, _ := sets[0].Value(KeyOutcome); v.AsString() != Rejected {
		t.Errorf("request outcome = %q, want %q", v.AsString(), Rejected)
	}
}

// TestPendingSkipsIdleGlobal: the pending gauge is observed with a real
// provider, and not registered with otel's idle global, which would keep
// it for ever.
func TestPendingSkipsIdleGlobal(t *testing.T) {
	idle, err := New("authority", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !idle.idleMeter {
		t.Fatal("otel's global meter provider not recognised as idle")
	}
	reader := sdkmetric.NewManualReader()
	tel, err := New("authority", nil, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	if err := tel.Pending(func(context.Context) (int64, error) { return 7, nil }); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var got int64 = -1
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "agentpass.pending" && len(g.DataPoints) == 1 {
				got = g.DataPoints[0].Value
			}
		}
	}
	if got != 7 {
		t.Fatalf("agentpass.pending = %d, want 7", got)
	}
}
