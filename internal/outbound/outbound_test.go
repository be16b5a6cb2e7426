package outbound

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNewDefaults(t *testing.T) {
	hc, err := New(Policy{Role: "test", Timeout: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tr, ok := hc.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is a %T", hc.Transport)
	}
	if tr.Proxy != nil {
		t.Error("the default transport reads a proxy from the environment")
	}
	if tr.MaxIdleConnsPerHost != MaxIdleConnsPerHost || tr.TLSClientConfig.MinVersion < 0x0303 || tr.DialContext == nil {
		t.Errorf("transport not hardened: idle %d, TLS min %x, guarded %v", tr.MaxIdleConnsPerHost, tr.TLSClientConfig.MinVersion, tr.DialContext != nil)
	}
	if hc.Timeout != 7*time.Second || hc.Jar != nil || hc.CheckRedirect == nil {
		t.Errorf("client: timeout %v, jar %v, redirect check %v", hc.Timeout, hc.Jar != nil, hc.CheckRedirect != nil)
	}
	if dt := http.DefaultTransport.(*http.Transport); dt.MaxIdleConnsPerHost == MaxIdleConnsPerHost || dt.Proxy == nil {
		t.Error("http.DefaultTransport was modified")
	}

	// The caller's timeout and idle setting win.
	caller := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 3}}
	hc, err = New(Policy{Role: "test", Client: caller, Timeout: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if hc.Timeout != time.Minute || hc.Transport.(*http.Transport).MaxIdleConnsPerHost != 3 {
		t.Errorf("caller's settings lost: timeout %v, idle %d", hc.Timeout, hc.Transport.(*http.Transport).MaxIdleConnsPerHost)
	}
}

type badWrapper struct{ next http.RoundTripper }

func (w badWrapper) RoundTrip(r *http.Request) (*http.Response, error) { return w.next.RoundTrip(r) }
func (w badWrapper) Unwrap() http.RoundTripper                         { return w.next }
func (w badWrapper) Rewrap(http.RoundTripper) http.RoundTripper        { return nil }

type selfWrapper struct{}

func (w *selfWrapper) RoundTrip(*http.Request) (*http.Response, error) { return nil, nil }
func (w *selfWrapper) Unwrap() http.RoundTripper                       { return w }
func (w *selfWrapper) Rewrap(rt http.RoundTripper) http.RoundTripper   { return rt }

// TestNewRefuses: configurations that cannot be made safe fail in New,
// with an error naming the role, and never panic.
func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want string
	}{
		{"Rewrap returns nil", Policy{Client: &http.Client{Transport: badWrapper{}}}, "Rewrap returned nil"},
		{"wrapper unwrapping to itself", Policy{Client: &http.Client{Transport: &selfWrapper{}}}, "wrappers"},
		{"negative timeout", Policy{Timeout: -1}, "negative"},
		{"negative redirects", Policy{SameOriginRedirects: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Role = "rolename"
			_, err := New(tt.p)
			if err == nil || !strings.HasPrefix(err.Error(), "rolename: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// spoofedConn is what a tunnelling dialer returns: a connection whose
// remote address is the tunnel's public one.
type spoofedConn struct{ net.Conn }

func (spoofedConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 1080} }

// TestNewRefusesTunnellingDialer (review Low 1b): a Transport with its own
// dialer is refused, pointing to WrapTransport, unless private networks are
// allowed: a tunnel reporting a public address reached a loopback server
// ("internal secret") through the dial-time check.
func TestNewRefusesTunnellingDialer(t *testing.T) {
	secret := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "internal secret")
	}))
	defer secret.Close()
	tunnel := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, secret.Listener.Addr().String())
		if err != nil {
			return nil, err
		}
		return spoofedConn{c}, nil
	}
	tests := []struct {
		name string
		tr   *http.Transport
	}{
		{"DialContext", &http.Transport{DialContext: tunnel}},
		{"DialTLSContext", &http.Transport{DialTLSContext: tunnel}},
		//lint:ignore SA1019 the deprecated fields are what is tested.
		{"Dial", &http.Transport{Dial: func(n, a string) (net.Conn, error) { return tunnel(context.Background(), n, a) }}},
		//lint:ignore SA1019 the deprecated fields are what is tested.
		{"DialTLS", &http.Transport{DialTLS: func(n, a string) (net.Conn, error) { return tunnel(context.Background(), n, a) }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc, err := New(Policy{Role: "rolename", Client: &http.Client{Transport: tt.tr}})
			if err == nil {
				resp, err := hc.Get("http://internal.example/")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Fatalf("New accepted a tunnelling dialer, which reached %q", body)
				}
				t.Fatalf("New accepted a tunnelling dialer (the request failed: %v)", err)
			}
			if !strings.HasPrefix(err.Error(), "rolename: ") || !strings.Contains(err.Error(), "WrapTransport") {
				t.Errorf("err = %v, want the role and a pointer to WrapTransport", err)
			}
			// Behind a wrapper that exposes it, too.
			if _, err := New(Policy{Role: "rolename", Client: &http.Client{Transport: rewrapper{tt.tr}}}); err == nil {
				t.Error("New accepted a tunnelling dialer behind a wrapper")
			}
			if _, err := New(Policy{Role: "rolename", Client: &http.Client{Transport: tt.tr}, AllowPrivateNetworks: true}); err != nil {
				t.Errorf("with private networks allowed: %v", err)
			}
		})
	}
}

type rewrapper struct{ next http.RoundTripper }

func (w rewrapper) RoundTrip(r *http.Request) (*http.Response, error) { return w.next.RoundTrip(r) }
func (w rewrapper) Unwrap() http.RoundTripper                         { return w.next }
func (w rewrapper) Rewrap(rt http.RoundTripper) http.RoundTripper     { return rewrapper{rt} }

// TestProtocols: the policy speaks HTTP/1.1 to a server that offers HTTP/2
// as well, unless the caller's Transport.Protocols asks for HTTP/2, which
// is kept (#19: HTTP/2 costs more CPU per small call in Go).
func TestProtocols(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	proto := func(tr *http.Transport) string {
		t.Helper()
		body, _ := getThrough(t, tr, srv.URL)
		return body
	}
	// ForceAttemptHTTP2, as in a clone of http.DefaultTransport, is not a choice.
	if got := proto(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}); got != "HTTP/1.1" {
		t.Errorf("default: server saw %s, want HTTP/1.1", got)
	}
	var h2 http.Protocols
	h2.SetHTTP1(true)
	h2.SetHTTP2(true)
	if got := proto(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, Protocols: &h2}); got != "HTTP/2.0" {
		t.Errorf("caller chose HTTP/2: server saw %s", got)
	}
}

// TestNoCompression (#19 item 2): calls ask for no gzip, which cost each a
// header map of its own, and an answer is read as sent.
func TestNoCompression(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "accept-encoding="+r.Header.Get("Accept-Encoding"))
	}))
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	body, resp := getThrough(t, &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, srv.URL)
	if body != "accept-encoding=" || resp.Uncompressed {
		t.Errorf("server saw %q, uncompressed %v", body, resp.Uncompressed)
	}
}

// getThrough GETs url with the outbound client made around tr and returns
// the answer's body and the answer.
func getThrough(t *testing.T, tr *http.Transport, url string) (string, *http.Response) {
	t.Helper()
	hc, err := New(Policy{Role: "test", Client: &http.Client{Transport: tr}, AllowPrivateNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body), resp
}
