package discovery

import (
	"testing"

	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

// go test -run '^$' -bench . -benchmem ./discovery/

func BenchmarkLookupTXTCached(b *testing.B) {
	srv := dnstest.NewServer(b)
	c, _ := newTestClient(b, srv, nil)
	srv.SetTXT("_agentpass.bench.example", 3600, cfgURL)
	if _, err := c.LookupEnterpriseTXT(bg(), "bench.example"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.LookupEnterpriseTXT(bg(), "bench.example"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupTXTCachedParallel(b *testing.B) {
	srv := dnstest.NewServer(b)
	c, _ := newTestClient(b, srv, nil)
	srv.SetTXT("_agentpass.bench.example", 3600, cfgURL)
	if _, err := c.LookupEnterpriseTXT(bg(), "bench.example"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.LookupEnterpriseTXT(bg(), "bench.example"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A cold lookup: one UDP round trip to the loopback server per iteration.
func BenchmarkLookupTXTCold(b *testing.B) {
	srv := dnstest.NewServer(b)
	c, _ := newTestClient(b, srv, nil)
	srv.SetTXT("_agentpass.bench.example", 3600, cfgURL)
	for b.Loop() {
		c.txtCache.clear()
		if _, err := c.LookupEnterpriseTXT(bg(), "bench.example"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkServiceConfigurationCached(b *testing.B) {
	e := newEnv(b, nil)
	e.web.set("/.well-known/agentpass-service", route{body: serviceConfigJSON, cacheControl: "max-age=3600"})
	if _, err := e.c.ServiceConfiguration(bg(), svcURL); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := e.c.ServiceConfiguration(bg(), svcURL); err != nil {
			b.Fatal(err)
		}
	}
}

// A cold fetch: HTTPS over loopback (kept-alive connection), decode and
// validate per iteration.
func BenchmarkServiceConfigurationCold(b *testing.B) {
	e := newEnv(b, nil)
	e.web.set("/.well-known/agentpass-service", route{body: serviceConfigJSON})
	for b.Loop() {
		e.c.docCache.clear()
		if _, err := e.c.ServiceConfiguration(bg(), svcURL); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDiscoverServiceCached(b *testing.B) {
	e := newEnv(b, nil)
	e.dns.SetTXT("_agentpass-service.api.example.com", 3600, svcURL)
	e.web.set("/.well-known/agentpass-service", route{body: serviceConfigJSON, cacheControl: "max-age=3600"})
	for b.Loop() {
		if _, err := e.c.DiscoverService(bg(), "https://api.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupKeyCached(b *testing.B) {
	e := newEnv(b, nil)
	k := ecKey(b)
	e.web.set("/jwks.json", route{body: jwksJSON(b, pub("k1", &k.PublicKey)), cacheControl: "max-age=3600"})
	for b.Loop() {
		if _, err := e.c.LookupKey(bg(), jwksURL, "k1"); err != nil {
			b.Fatal(err)
		}
	}
}

// An unknown kid within the cooldown: rejected without a fetch.
func BenchmarkLookupKeyUnknownKid(b *testing.B) {
	e := newEnv(b, nil)
	k := ecKey(b)
	e.web.set("/jwks.json", route{body: jwksJSON(b, pub("k1", &k.PublicKey)), cacheControl: "max-age=3600"})
	for b.Loop() {
		if _, err := e.c.LookupKey(bg(), jwksURL, "nope"); err == nil {
			b.Fatal("found")
		}
	}
	if n := e.web.hitCount("/jwks.json"); n != 1 {
		b.Fatalf("%d fetches", n)
	}
}

// TestDiscoverServiceCachedAllocs (#19): a warm DiscoverService, which an
// Authority runs for every assertion, parses no URL and builds no name: it
// allocates only the caller's copy of the configuration (22 allocations
// before).
func TestDiscoverServiceCachedAllocs(t *testing.T) {
	e := newEnv(t, nil)
	e.dns.SetTXT("_agentpass-service.api.example.com", 3600, svcURL)
	e.web.set("/.well-known/agentpass-service", route{body: serviceConfigJSON, cacheControl: "max-age=3600"})
	if _, err := e.c.DiscoverService(bg(), "https://api.example.com"); err != nil {
		t.Fatal(err)
	}
	// The caller's copy is its own.
	d, _ := e.c.DiscoverService(bg(), "https://api.example.com")
	d.Configuration.Service.Origin, d.Configuration.JWKSURI = "https://evil.example", ""
	n := testing.AllocsPerRun(100, func() {
		d, err := e.c.DiscoverService(bg(), "https://api.example.com")
		if err != nil || d.Configuration.Service.Origin != "https://api.example.com" {
			t.Fatal(d, err)
		}
	})
	if n > 3 {
		t.Errorf("warm DiscoverService: %v allocations, want at most 3", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := e.c.LookupServiceTXT(bg(), "api.example.com"); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("cached LookupServiceTXT: %v allocations, want 0", n)
	}
}
