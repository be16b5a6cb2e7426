package discovery

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestDiscoverySpans: a discovery's DNS lookup and document fetch each leave
// a client span with the outcome, and a cached answer leaves none.
func TestDiscoverySpans(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	e := newEnv(t, func(cfg *Config) { cfg.TracerProvider = tp })
	e.dns.SetTXT("_agentpass-service.api.example.com", 300, svcURL)
	e.web.set("/.well-known/agentpass-service", route{body: serviceConfigJSON})
	for range 2 {
		if _, err := e.c.DiscoverService(bg(), "https://api.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	for _, s := range spans.GetSpans() {
		got[s.Name]++
		if s.SpanKind != trace.SpanKindClient {
			t.Errorf("%s: kind %v, want client", s.Name, s.SpanKind)
		}
		outcome := ""
		for _, kv := range s.Attributes {
			if kv.Key == "agentpass.outcome" {
				outcome = kv.Value.AsString()
			}
		}
		if outcome != "ok" {
			t.Errorf("%s: outcome %q, want ok", s.Name, outcome)
		}
	}
	if got["agentpass.discovery.dns"] != 1 || got["agentpass.discovery.fetch"] != 1 {
		t.Fatalf("spans = %v, want one DNS lookup and one fetch (the second discovery is cached)", got)
	}
}
