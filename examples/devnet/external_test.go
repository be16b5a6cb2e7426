package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/examples/devnet/devnetclient"
)

// TestExternal: -external makes a server of the user's a host the devnet's
// parties reach with the certificate the devnet issued, and -txt publishes
// a record in the devnet's DNS.
func TestExternal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{dir: t.TempDir(), dnsAddr: "127.0.0.1:0",
		externals: listFlag{"mine.test=" + ln.Addr().String()},
		txts:      listFlag{"_agentpass-service.mine.test=https://mine.test/agentpass/configuration"}}
	d, err := start(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	x := d.manifest.External[0]
	cert, err := tls.LoadX509KeyPair(x.CertFile, x.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "my service") }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()

	resp, err := d.net.Client().Get(x.Origin + "/") // as the devnet's Authorities call it
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "my service" {
		t.Errorf("body %q", b)
	}
	dev, err := devnetclient.New(devnetclient.Config{DNS: d.manifest.DNS})
	if err != nil {
		t.Fatal(err)
	}
	txt, err := dev.Resolver.LookupTXT(context.Background(), "_agentpass-service.mine.test")
	if err != nil || len(txt) != 1 || txt[0] != "https://mine.test/agentpass/configuration" {
		t.Errorf("TXT = %q, %v", txt, err)
	}
	if d.manifest.Hosts["mine.test"] != ln.Addr().String() {
		t.Errorf("manifest hosts: %v", d.manifest.Hosts)
	}
	for _, bad := range []string{"bad", "mine.example.com=127.0.0.1:9"} {
		if _, err := start(context.Background(), config{dir: t.TempDir(), dnsAddr: "127.0.0.1:0", externals: listFlag{bad}}, io.Discard); err == nil {
			t.Errorf("-external %s: no error", bad)
		}
	}
	// The banner names the external host with its certificate files, and
	// every TXT record.
	var banner strings.Builder
	d.printSummary(&banner)
	for _, want := range []string{"mine.test", x.CertFile, x.KeyFile, "_agentpass-service.mine.test", "https://mine.test/agentpass/configuration",
		"_agentpass.corp.test", "_agentpass.locked.test"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q", want)
		}
	}
}
