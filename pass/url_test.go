package pass_test

import (
	"fmt"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// FuzzURLFastPath: the URL checks answer canonical URLs without url.Parse
// (#19); on every input they must agree with the url.Parse path, in
// acceptance, value and error.
func FuzzURLFastPath(f *testing.F) {
	for _, s := range []string{
		"https://api.example.com", "https://api.example.com/", "https://api.example.com:443",
		"https://api.example.com:8443/v1/validate?x=1", "https://127.0.0.1:9000", "https://[::1]:9000/a",
		"https://API.Example.com", "https://a.example.com/#f", "https://user@a.example.com", "https://",
		"https://a.example.com:", "https://a.example.com:99999", "https://a.example.com:0443/", "https://a?",
		"https://a.example.com/%41", "https://a.example.com/ x", "https://a..b/", "https://-/", "http://a.example.com",
		"https://a.example.com/a:b@c;d=e,f*g+h!i$j&k'l(m)n~o_p", "https://a.example.com/?q", "https://a.b:123456",
	} {
		f.Add(s)
	}
	same := func(t *testing.T, what, s string, got, want string, gotErr, wantErr error) {
		t.Helper()
		if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("%s(%q) = %q, %v; url.Parse path: %q, %v", what, s, got, gotErr, want, wantErr)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		same(t, "CheckHTTPSURL", s, "", "", pass.CheckHTTPSURL(s), pass.CheckHTTPSURLSlow(s))
		same(t, "CheckOrigin", s, "", "", pass.CheckOrigin(s), pass.CheckOriginSlow(s))
		o, err := pass.Origin(s)
		wo, werr := pass.OriginSlow(s)
		same(t, "Origin", s, o, wo, err, werr)
		h, err := pass.Host(s)
		wh, werr := pass.HostSlow(s)
		same(t, "Host", s, h, wh, err, werr)
	})
}

// TestURLFastPathAllocs: a canonical URL is checked, and its origin and
// host taken, without allocating (#19).
func TestURLFastPathAllocs(t *testing.T) {
	const u = "https://api.example.com:8443/agentpass/validate"
	n := testing.AllocsPerRun(100, func() {
		if pass.CheckHTTPSURL(u) != nil || pass.CheckOrigin("https://api.example.com") != nil {
			t.Fatal("rejected")
		}
		if o, err := pass.Origin(u); err != nil || o != "https://api.example.com:8443" {
			t.Fatalf("Origin = %q, %v", o, err)
		}
		if h, err := pass.Host(u); err != nil || h != "api.example.com" {
			t.Fatalf("Host = %q, %v", h, err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}
