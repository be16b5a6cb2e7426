package testnet

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServePort: a host served with an explicit port is reached by the
// network's client at "host:port" only, resolves to 127.0.0.1 through the
// network's DNS server, and presents a certificate a client trusting only
// the CA file accepts (what the devnet's users do with curl --cacert).
func TestServePort(t *testing.T) {
	n := New(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.Host) })
	origin, err := n.ServePort("todo.test", "127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(n.Addr("todo.test"))
	if want := "https://todo.test:" + port; origin != want {
		t.Fatalf("origin = %q, want %q", origin, want)
	}
	if got := n.Origin("todo.test"); got != origin {
		t.Errorf("Origin = %q, want %q", got, origin)
	}
	if got := n.Hosts()["todo.test"]; got != n.Addr("todo.test") {
		t.Errorf("Hosts()[todo.test] = %q", got)
	}
	// Replacing the handler keeps the origin.
	again, err := n.ServePort("todo.test", "127.0.0.1:0", h)
	if err != nil || again != origin {
		t.Errorf("second ServePort = %q, %v; want %q", again, err, origin)
	}

	resp, err := n.Client().Get(origin + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := string(body); got != "hello todo.test:"+port {
		t.Errorf("body = %q", got)
	}
	if _, err := n.Client().Get("https://todo.test/"); err == nil || !strings.Contains(err.Error(), "not a host of this network") {
		t.Errorf("GET https://todo.test/ (port 443) = %v, want refused by the dialer", err)
	}

	// An outside tool: resolve through the DNS server, verify with the CA.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, n.DNS.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := r.LookupHost(ctx, "todo.test")
	if err != nil || len(ips) != 1 || ips[0] != "127.0.0.1" {
		t.Fatalf("LookupHost(todo.test) = %v, %v", ips, err)
	}
	conn, err := tls.Dial("tcp", net.JoinHostPort(ips[0], port), &tls.Config{ServerName: "todo.test", RootCAs: n.CertPool()})
	if err != nil {
		t.Fatalf("TLS with the network's CA: %v", err)
	}
	conn.Close()
}

// TestAddExternal: a server the network did not start, presenting the
// certificate AddExternal issued, is reached by the network's client under
// its host name.
func TestAddExternal(t *testing.T) {
	n := New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	origin, certPEM, keyPEM, err := n.AddExternal("mine.test", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "mine") }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	resp, err := n.Client().Get(origin + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "mine" {
		t.Errorf("body %q", b)
	}
	if _, _, _, err := n.AddExternal("mine.test", "127.0.0.1:1"); err == nil {
		t.Error("adding a host twice succeeded")
	}
	n.Close() // must not touch the external server
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "mine.test", RootCAs: n.CertPool()}); err != nil {
		t.Errorf("the external server was stopped by Close: %v", err)
	}
}
