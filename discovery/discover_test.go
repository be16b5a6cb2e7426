package discovery

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

// X-DNS-1, X-DNS-2, X-DNS-6, G-9, G-24: TXT then configuration, whose
// service.origin must be the origin looked up.
func TestDiscoverService(t *testing.T) {
	e := newEnv(t, nil)
	e.dns.SetTXT("_agentpass-service.api.example.com", 300, svcURL)
	e.web.set("/.well-known/agentpass-service", route{body: serviceConfigJSON})
	for _, origin := range []string{"https://api.example.com", "https://API.example.com/", "https://api.example.com:443"} {
		info, err := e.c.DiscoverService(bg(), origin)
		if err != nil {
			t.Fatalf("%s: %v", origin, err)
		}
		if info.ConfigurationURL != svcURL || info.Configuration.Service.Origin != "https://api.example.com" {
			t.Errorf("%s: got %+v", origin, info)
		}
	}

	// Another Service's configuration.
	e.dns.SetTXT("_agentpass-service.other.example.com", 300, svcURL)
	_, err := e.c.DiscoverService(bg(), "https://other.example.com")
	var me *MismatchError
	if !errors.As(err, &me) || !errors.Is(err, ErrMismatch) || !errors.Is(err, ErrInvalidDocument) {
		t.Fatalf("mismatch: %v", err)
	}
	want := &MismatchError{URL: svcURL, Field: "service.origin", Got: "https://api.example.com", Want: "https://other.example.com"}
	if diff := cmp.Diff(want, me); diff != "" {
		t.Errorf("MismatchError (-want +got):\n%s", diff)
	}
	// A different port is a different origin.
	e.dns.SetTXT("_agentpass-service.api.example.com", 300, svcURL)
	if _, err := e.c.DiscoverService(bg(), "https://api.example.com:8443"); !errors.Is(err, ErrMismatch) {
		t.Errorf("other port: %v, want ErrMismatch", err)
	}

	for _, bad := range []string{"http://api.example.com", "https://api.example.com/path", "api.example.com", "https://127.0.0.1"} {
		if _, err := e.c.DiscoverService(bg(), bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: %v, want ErrInvalidName", bad, err)
		}
	}
	if _, err := e.c.DiscoverService(bg(), "https://none.example.com"); !errors.Is(err, ErrNoRecord) {
		t.Errorf("no record: %v", err)
	}
}

// X-DNS-4…7, G-10, G-31.
func TestDiscoverEnterprise(t *testing.T) {
	e := newEnv(t, nil)
	e.web.set("/.well-known/agentpass", route{body: authorityConfigJSON})
	e.web.set("/federated", route{body: strings.Replace(authorityConfigJSON, `"enterprise"`, `"federated"`, 1)})
	e.dns.SetTXT("_agentpass.corp.example", 300, authURL)
	e.dns.SetTXT("_agentpass.fed.example", 300, "https://agentpass.example.com/federated")
	e.dns.SetTXT("_agentpass.off.example", 300, "none")
	e.dns.SetFault("_agentpass.down.example", dnstest.FaultServFail)
	e.dns.SetTXT("_agentpass.gone.example", 300, "https://agentpass.example.com/missing")

	info, err := e.c.DiscoverEnterprise(bg(), "Corp.Example")
	if err != nil {
		t.Fatal(err)
	}
	if info.ConfigurationURL != authURL || info.Configuration.Authority != "https://agentpass.example.com" {
		t.Errorf("got %+v", info)
	}
	tests := []struct {
		domain string
		want   string
	}{
		{"fed.example", "invalid-document"},
		{"off.example", "none"},
		{"nothing.example", "no-record"},
		{"down.example", "lookup-failed"},
		{"gone.example", "fetch-failed"},
		{"user@corp.example", "invalid-name"},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			_, err := e.c.DiscoverEnterprise(bg(), tt.domain)
			if got := outcome(t, err); got != tt.want {
				t.Errorf("outcome %s (%v), want %s", got, err, tt.want)
			}
		})
	}
	_, err = e.c.DiscoverEnterprise(bg(), "fed.example")
	var me *MismatchError
	if !errors.As(err, &me) || me.Field != "trust_mode" || me.Got != "federated" {
		t.Errorf("trust_mode mismatch: %v", err)
	}
}
